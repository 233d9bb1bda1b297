"""Changing what a paired device shares without pairing again (``meshdex peer share`` /
``unshare``), driven through the CLI against two real ``meshdex serve`` processes on loopback
mTLS: a collection moves once both sides share it, unsharing stops it both ways at once, and
sharing it again sends what changed meanwhile, deletes included, even after a compaction."""

from __future__ import annotations

import json
from pathlib import Path

from meshdex.sync.identity import load_identity
from meshdex.sync.trust import READ_WRITE, TrustStore, make_peer
from sync_support import SyncServeProcess, store_digest, wait_for, write_jsonl

DEAD_EMBEDDER = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9/",
                 "--embedder-model", "none")  # collections that never build: sync alone


def _start_paired(a: SyncServeProcess, b: SyncServeProcess, tmp_path: Path, *, shared: str) -> None:
    """``a`` holds notes {n} and papers {p1, p2}; both serve, paired sharing ``shared``."""
    for name, docs in (("notes", {"n": "a note"}),
                       ("papers", {"p1": "first paper", "p2": "second paper"})):
        a.meshdex("init", "-c", name, *DEAD_EMBEDDER)
        a.meshdex("add", "-c", name, "--jsonl", write_jsonl(tmp_path / f"{name}.jsonl", docs))
    a.start()
    b.start()
    token = a.meshdex("invite", "--collections", shared).stdout.strip()
    assert "paired with" in b.meshdex("join", token).stdout
    wait_for(lambda: "n" in store_digest(b.data_dir, "notes")["live"], what="notes on b")


def _live(process: SyncServeProcess, collection: str) -> set[str]:
    return set(store_digest(process.data_dir, collection)["live"])


def _sync_report(process: SyncServeProcess) -> dict:
    [report] = json.loads(process.meshdex("--node", process.node_address, "sync",
                                          "--json").stdout)
    assert report["error"] is None, report
    return report


def test_a_collection_shared_after_pairing_moves_once_the_other_side_shares_it_back(
        two, tmp_path):
    a, b = two
    _start_paired(a, b, tmp_path, shared="notes")
    a_id, b_id = a.meshdex("id").stdout.strip(), b.meshdex("id").stdout.strip()

    shared = a.meshdex("peer", "share", b_id, "papers")  # no --node: through the one serving
    assert "sharing notes, papers with" in shared.stdout
    assert f"`meshdex peer share {a_id} papers`" in shared.stdout
    report = _sync_report(a)
    assert report["not_shared_back"] == ["papers"]
    assert [c["collection"] for c in report["collections"]] == ["notes"]
    text = a.meshdex("--node", a.node_address, "sync").stdout
    assert "papers: not shared back by" in text
    assert _live(b, "papers") == set()

    b.meshdex("--node", b.node_address, "peer", "share", a_id, "papers")  # through its node
    wait_for(lambda: _live(b, "papers") == {"p1", "p2"}, what="papers on b")
    assert _sync_report(a)["not_shared_back"] == []
    peers = json.loads(b.meshdex("peers", "--json").stdout)
    assert peers[0]["collections"] == ["notes", "papers"]


def test_unsharing_stops_both_ways_and_sharing_again_sends_the_deletes_made_meanwhile(
        two, tmp_path):
    a, b = two
    _start_paired(a, b, tmp_path, shared="notes,papers")
    wait_for(lambda: _live(b, "papers") == {"p1", "p2"}, what="papers on b")
    b_id = b.meshdex("id").stdout.strip()

    unshared = a.meshdex("--node", a.node_address, "peer", "unshare", b_id, "papers")
    assert "stopped sharing papers with" in unshared.stdout
    assert unshared.stdout.rstrip().endswith("it shares notes")
    a.meshdex("--node", a.node_address, "rm", "-c", "papers", "p1")
    b.meshdex("--node", b.node_address, "add", "-c", "papers", "--jsonl",
              write_jsonl(tmp_path / "b.jsonl", {"p3": "b's paper"}))
    compacted = json.loads(a.meshdex("--node", a.node_address, "compact", "--json").stdout)
    assert compacted["tombstones_dropped"] == 0, "b got p1 from here: its delete must wait"
    assert _sync_report(a)["collections"][0]["collection"] == "notes"
    assert _sync_report(b)["not_shared_back"] == ["papers"]
    assert (_live(a, "papers"), _live(b, "papers")) == ({"p2"}, {"p1", "p2", "p3"})

    a.meshdex("--node", a.node_address, "peer", "share", b_id, "papers")
    wait_for(lambda: _live(a, "papers") == _live(b, "papers") == {"p2", "p3"},
             what="the delete on b and b's paper on a")


def test_bad_share_requests_fail_with_the_same_exit_code_embedded_and_through_the_node(
        two, tmp_path):
    a, b = two
    _start_paired(a, b, tmp_path, shared="notes")
    b_id = b.meshdex("id").stdout.strip()
    unknown = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2"
    cases = [  # (arguments, exit code, words of the error)
        (["peer", "unshare", b_id, "papers"], 2, "'papers' not shared with"),
        (["peer", "share", b_id, "no spaces"], 2, "invalid collection name"),
        (["peer", "share", unknown, "papers"], 3, "no paired peer"),
        (["peer", "share", b_id], 2, "Missing argument"),
    ]
    for args, code, words in cases:
        for where in ((), ("--node", a.node_address)):
            result = a.meshdex(*where, *args, check=False)
            assert (result.returncode, words in result.stderr) == (code, True), (
                where, args, result.stderr)
    peers = json.loads(a.meshdex("peers", "--json").stdout)
    assert peers[0]["collections"] == ["notes"], "a refused change changes nothing"


def test_sharing_a_collection_this_device_does_not_hold_says_so(tmp_path) -> None:
    """``invite --collections nosuch`` (and ``peer share``) took a mistyped name without a
    word, and nothing ever moved. Sharing a collection only the peer holds is allowed (it
    arrives from it), so the command goes on and says which are not here and which are."""
    a = SyncServeProcess(tmp_path / "a")
    a.meshdex("init", "-c", "notes", *DEAD_EMBEDDER)
    invited = a.meshdex("invite", "--collections", "nosuch,notes")
    assert invited.stdout.startswith("mdxi_")
    assert ("note: 'nosuch' not on this device (it holds notes); shared anyway: it arrives "
            "from the peer if the peer holds it, else nothing moves") in invited.stderr
    assert "note:" not in a.meshdex("invite", "--collections", "notes").stderr
    peer = TrustStore(a.data_dir).add(make_peer(
        cert_pem=load_identity(tmp_path / "b").cert_pem.decode(), name="b",
        addresses=["127.0.0.1:9"], collections=["notes"], mode=READ_WRITE))
    shared = a.meshdex("peer", "share", peer.device_id, "papres")
    assert "sharing notes, papres with b" in shared.stdout
    assert "note: 'papres' not on this device (it holds notes)" in shared.stderr
