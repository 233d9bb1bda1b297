"""Tombstones a gone device holds back (``meshdex compact`` says whose, ``meshdex peer forget``
lets them go), against two real ``meshdex serve`` processes on loopback mTLS: a delete waits
for the paired device that has not acknowledged it, still waits once that device is removed
(it may be paired again), goes after ``peer forget``; pairing the forgotten device again is
refused, as are its sessions, so the document it still holds does not come back."""

from __future__ import annotations

import json
import signal

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.sync.client import Session
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import READ_WRITE, TrustStore, make_peer
from sync_support import (
    UNBUILT,
    SyncServeProcess,
    pair,
    start_sync_node,
    stop_sync_node,
    store_digest,
    wait_for,
    write_jsonl,
)

DEAD_EMBEDDER = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9/",
                 "--embedder-model", "none")  # a collection that never builds: sync alone


def _live(process: SyncServeProcess) -> set[str]:
    return set(store_digest(process.data_dir, "notes")["live"])


def _compact(process: SyncServeProcess) -> dict:
    return json.loads(process.meshdex("compact", "--json").stdout)


def test_a_removed_devices_tombstones_wait_until_forgotten_and_it_is_refused_after(
        two, tmp_path) -> None:
    a, b = two
    a.meshdex("init", "-c", "notes", *DEAD_EMBEDDER)
    a.meshdex("add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / "notes.jsonl", {"n1": "first", "n2": "second"}))
    a.start()
    b.start()
    token = a.meshdex("invite", "--collections", "notes").stdout.strip()
    b.meshdex("join", token)
    b_id = b.meshdex("id").stdout.strip()
    wait_for(lambda: _live(b) == {"n1", "n2"}, what="the notes on b")
    a.meshdex("sync")  # b acknowledges them
    b.stop()

    a.meshdex("rm", "-c", "notes", "n1")  # beside a's serving node: through it
    waiting = _compact(a)
    assert (waiting["tombstones_dropped"], waiting["tombstones_kept"]) == (0, 1)
    assert (waiting["waiting_for_peers"], waiting["waiting_for_unpaired"]) == ([b_id], 0)
    assert f"kept 1 tombstone: not yet acknowledged by peer {b_id[:7]}" in (
        a.meshdex("compact").stdout)

    a.meshdex("peer", "rm", b_id)  # b is gone for good, say: its cursor still holds n1 back
    removed = _compact(a)
    assert (removed["tombstones_kept"], removed["waiting_for_peers"],
            removed["waiting_for_unpaired"]) == (1, [], 1)
    assert "1 device no longer paired (`meshdex peer forget` lets it go)" in (
        a.meshdex("compact").stdout)

    would = a.meshdex("peer", "forget", "--dry-run")
    assert would.stdout.startswith("would forget 1 device no longer paired"), would.stdout
    assert _compact(a)["waiting_for_unpaired"] == 1  # a dry run changes nothing
    forgot = a.meshdex("peer", "forget")
    assert forgot.stdout.startswith("forgot 1 device no longer paired"), forgot.stdout
    assert json.loads(a.meshdex("peer", "forget", "--json").stdout) == {
        "forgotten_stores": [], "dry_run": False}
    cleared = _compact(a)
    assert (cleared["tombstones_dropped"], cleared["tombstones_kept"]) == (1, 0)

    # b comes back with n1, still paired with a; pairing it again by hand is refused at once
    # (it was accepted, and every session refused it after)
    b.start()
    again = a.meshdex("peer", "add", b_id, f"127.0.0.1:{b.sync_port}", "--collections",
                      "notes", check=False)
    assert again.returncode == 5, again.stderr
    assert f"device {b_id} was removed and then forgotten here" in again.stderr
    assert "forgetting cannot be undone" in again.stderr
    assert "`meshdex join` on it from an empty data directory" in again.stderr
    joined = a.meshdex("join", b.meshdex("invite", "--collections", "notes").stdout.strip(),
                       check=False)
    assert joined.returncode == 5 and "forgetting cannot be undone" in joined.stderr, joined
    assert json.loads(a.meshdex("peers", "--json").stdout) == [], "nothing is recorded"
    # however it gets back into the peers file (a restored backup, say), sessions refuse it
    TrustStore(a.data_dir).add(make_peer(
        cert_pem=load_identity(b.data_dir).cert_pem.decode(), name="b",
        addresses=[f"127.0.0.1:{b.sync_port}"], collections=["notes"], mode=READ_WRITE))
    refused = a.meshdex("sync", "--json", check=False)
    [outgoing] = json.loads(refused.stdout)
    assert refused.returncode == 12 and "was forgotten here" in outgoing["error"], outgoing
    refused = b.meshdex("sync", "--json", check=False)
    [incoming] = json.loads(refused.stdout)
    assert "this device forgot your store" in incoming["error"], incoming
    assert _live(a) == {"n2"}, "the forgotten device's copy of n1 must not come back"
    assert _live(b) == {"n1", "n2"}
    b.stop(signal.SIGKILL)


def test_a_session_cut_after_hello_has_already_recorded_the_peers_store(
        tmp_path, monkeypatch) -> None:
    """``peer forget`` takes a store no trust record names for a gone device's: a session that
    dies (kill -9) after its first acknowledgement must not leave the paired peer's store
    unnamed, or forgetting would cut a working pairing."""
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    try:
        for node in (a, b):
            node.service.scheduler.stop()
        a.node.create_collection("notes", embedder=UNBUILT, chunking=ChunkingParams())
        a.add("notes", {"x": "from a"})
        pair(a, b)  # b dials a
        assert TrustStore(b.node.data_dir).get(a.device_id).store_id == ""

        def crash(*_args, **_kwargs):
            raise RuntimeError("killed mid-session")

        monkeypatch.setattr(Session, "_pull", crash)
        with pytest.raises(RuntimeError, match="killed mid-session"):
            b.service.sync_now()
        recorded = TrustStore(b.node.data_dir).get(a.device_id).store_id
        assert recorded == a.node.store.device_id
    finally:
        for node in (a, b):
            stop_sync_node(node)
