"""The trust store: paired peers persisted atomically, 0600, shared safely between processes."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.sync.errors import PeerExists, PeerNotFound, TrustStoreCorrupt
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import READ_ONLY, TrustStore, make_peer


def _peer(tmp_path: Path, name: str, **options):
    identity = load_identity(tmp_path / f"device-{name}")
    return make_peer(cert_pem=identity.cert_pem.decode(), name=name,
                     addresses=options.get("addresses", ["127.0.0.1:7711"]),
                     collections=options.get("collections", ["default"]),
                     mode=options.get("mode", "read-write"))


def test_add_find_remove_and_reload(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "data")
    laptop = store.add(_peer(tmp_path, "laptop", mode=READ_ONLY, collections=["b", "a"]))
    assert laptop.collections == ("a", "b") and laptop.read_only
    fresh = TrustStore(tmp_path / "data")
    assert fresh.get(laptop.device_id) == laptop
    assert stat.S_IMODE(fresh.path.stat().st_mode) == 0o600
    assert fresh.certificates() == [laptop.cert_pem.encode()]
    store.remove(laptop.device_id)
    assert fresh.find(laptop.device_id) is None  # another instance sees the removal
    with pytest.raises(PeerNotFound):
        fresh.remove(laptop.device_id)


def test_a_removed_devices_store_is_kept_until_it_is_paired_again(tmp_path: Path) -> None:
    """What refuses pairing again a device whose store `peer forget` forgot."""
    store = TrustStore(tmp_path / "data")
    peer = store.add(_peer(tmp_path, "x"))
    store.note(peer.device_id, store_id="s-1")
    store.remove(peer.device_id)
    assert TrustStore(tmp_path / "data").removed_store_id(peer.device_id) == "s-1"
    store.add(peer)
    assert TrustStore(tmp_path / "data").removed_store_id(peer.device_id) == ""


def test_a_paired_device_cannot_be_added_twice(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "data")
    peer = store.add(_peer(tmp_path, "x"))
    with pytest.raises(PeerExists):
        store.add(peer)


def test_sharing_changes_only_the_collections_and_a_refused_change_writes_nothing(
        tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "data")
    peer = store.add(_peer(tmp_path, "x", mode=READ_ONLY, collections=["notes"]))
    store.note(peer.device_id, store_id="s-1")
    shared = store.change_sharing(peer.device_id, share=("papers", "notes"))
    assert shared.collections == ("notes", "papers")
    assert shared == replace(peer, collections=("notes", "papers"), store_id="s-1",
                             last_contact=shared.last_contact), "only the collections change"
    assert TrustStore(tmp_path / "data").get(peer.device_id).collections == ("notes", "papers")
    assert store.change_sharing(peer.device_id, unshare=("notes",)).collections == ("papers",)
    before = store.path.read_bytes()
    for share, unshare, error, words in [
        ((), ("notes",), InvalidArgument, "'notes' not shared with x (it shares papers)"),
        (("bad name",), (), InvalidArgument, "invalid collection name"),
    ]:
        with pytest.raises(error, match=re.escape(words)):
            store.change_sharing(peer.device_id, share=share, unshare=unshare)
    assert store.path.read_bytes() == before
    store.remove(peer.device_id)
    with pytest.raises(PeerNotFound):
        store.change_sharing(peer.device_id, share=("notes",))


def test_note_records_contact_and_errors_without_resurrecting_removed_peers(tmp_path) -> None:
    store = TrustStore(tmp_path / "data")
    peer = store.add(_peer(tmp_path, "x"))
    store.note(peer.device_id, error="connection refused")
    assert store.get(peer.device_id).last_error == "connection refused"
    store.note(peer.device_id, synced=True)
    noted = store.get(peer.device_id)
    assert noted.last_error is None and noted.last_sync is not None
    store.remove(peer.device_id)
    store.note(peer.device_id, synced=True)
    assert store.all() == []


def test_a_damaged_peers_file_is_a_clear_error(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "data")
    store.path.write_text("{not json")
    with pytest.raises(TrustStoreCorrupt, match="cannot read the peers file"):
        store.all()


ADD = """
import sys
from pathlib import Path
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer
for n in range(5):
    ident = load_identity(Path(sys.argv[2]) / f"{sys.argv[3]}-{n}")
    TrustStore(Path(sys.argv[1])).add(make_peer(cert_pem=ident.cert_pem.decode(),
        name=f"{sys.argv[3]}-{n}",
        addresses=[], collections=["default"], mode="read-write"))
"""


def test_concurrent_adds_from_two_processes_are_all_kept(tmp_path: Path) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", ADD, str(tmp_path / "data"),
                                   str(tmp_path), tag]) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    data = json.loads(TrustStore(tmp_path / "data").path.read_text())
    assert len(data["peers"]) == 10
