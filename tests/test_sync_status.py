"""``meshdex status`` and the Status RPC show peer sync: each peer's lag in changes (this
device's changes since the peer's acknowledged cursor), last sync and last error, and the
conflict records kept per collection — the same through the node as embedded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from grpc_support import started_node
from meshdex.sync.admin import LocalSyncAdmin
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import MAX_ERROR_CHARS, READ_WRITE, TrustStore, make_peer
from sync_support import free_port, pair, start_sync_node, stop_sync_node, tick_past


def test_status_shows_each_peers_lag_last_sync_last_error_and_conflicts(tmp_path: Path) -> None:
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    stopped = []
    try:
        for node in (a, b):
            node.service.scheduler.stop()  # sessions run when the test says
        pair(a, b)
        a.node.peers_source = LocalSyncAdmin(a.service.config, service=a.service).peers
        a.add("notes", {"doc": "first", "other": "x"})
        [peer] = a.node.status().peers
        assert (peer.device_id, peer.lag, peer.last_sync) == (b.device_id, 2, None)

        a.service.sync_now()
        a.add("notes", {"doc": "edited on a"})
        tick_past(a)
        b.add("notes", {"doc": "edited on b, later"})  # wins; a keeps its edit as a conflict
        a.service.sync_now()
        with started_node(tmp_path / "a", node=a.node) as server, server.client("read") as client:
            remote = client.status()
        embedded = a.node.status()
        assert remote.peers == embedded.peers and remote.conflicts == embedded.conflicts
        [peer] = remote.peers
        assert (peer.lag, peer.last_error) == (0, None) and peer.last_sync is not None
        assert remote.conflicts == {"notes": 1}
        assert remote.to_dict()["sync"]["conflicts"] == 1

        stop_sync_node(b)
        stopped.append(b)
        a.add("notes", {"new": "not yet on b"})
        a.service.sync_now()
        [peer] = a.node.status().peers
        assert peer.lag == 1 and "unreachable" in (peer.last_error or "")
    finally:
        for node in (a, b):
            if node not in stopped:
                stop_sync_node(node)


def test_the_answering_device_shows_no_lag_for_the_peers_own_changes(tmp_path: Path) -> None:
    """b syncs with a: a applies b's changes after b acknowledged a's log, so counting every
    change since that cursor showed b as behind by its own writes until the next session."""
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    try:
        for node in (a, b):
            node.service.scheduler.stop()
        pair(a, b)
        a.add("notes", {"from a": "one"})
        b.add("notes", {"from b": "two", "also b": "three"})
        b.service.sync_now()
        assert sorted(doc.id for doc in a.node.store.iter_documents("notes")) == [
            "also b", "from a", "from b"]
        [peer] = LocalSyncAdmin(a.service.config, service=a.service).peers()
        assert peer.lag == 0
        a.add("notes", {"new on a": "four"})
        [peer] = LocalSyncAdmin(a.service.config, service=a.service).peers()
        assert peer.lag == 1
    finally:
        for node in (a, b):
            stop_sync_node(node)


def _meshdex(data_dir: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode in (0, 12), result.stderr  # 12: the sync failed, as it must
    return result.stdout


def test_a_long_last_error_is_cut_at_a_word_and_keeps_its_hint(tmp_path: Path) -> None:
    """A peer none of whose four addresses answers fails with one long error naming each; it
    was kept cut at 300 characters, mid-word and without its hint, in `peers` and `status`."""
    data_dir = tmp_path / "here"
    _meshdex(data_dir, "init", "-c", "notes")
    peer = TrustStore(data_dir).add(make_peer(
        cert_pem=load_identity(tmp_path / "gone").cert_pem.decode(), name="gone",
        addresses=[f"127.0.0.1:{free_port()}" for _ in range(4)], collections=["notes"],
        mode=READ_WRITE))
    [report] = json.loads(_meshdex(data_dir, "sync", "--json"))
    full = report["error"]
    hint = full[full.rindex(" hint: "):]
    assert len(full) > MAX_ERROR_CHARS and hint.startswith(" hint: is `meshdex serve` running")
    [listed] = json.loads(_meshdex(data_dir, "peers", "--json"))
    kept = listed["last_error"]
    assert len(kept) <= MAX_ERROR_CHARS and kept.endswith("\u2026" + hint), kept
    cut = kept[:kept.index("\u2026")]
    assert full.startswith(cut) and full[len(cut)] in " ,;:", "cut at a word boundary"
    [line] = [ln for ln in _meshdex(data_dir, "peers").splitlines() if peer.device_id in ln]
    assert line.endswith(f"last error: {kept}")
    assert f"gone ({peer.device_id[:7]}): lag 0, last sync never, last error: {kept}" in (
        _meshdex(data_dir, "status"))
