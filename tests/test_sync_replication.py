"""Replication between real nodes over real mTLS: both directions, tombstones, conflicts kept,
config shipped, bounded batches, resume from cursors, and order-independent merging."""

from __future__ import annotations

import itertools
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from fakes import HashingEmbedder
from hypothesis import given, settings
from hypothesis import strategies as st
from meshdex.index.chunking import ChunkingParams
from meshdex.node.errors import ClockSkew
from meshdex.node.hlc import HLCTimestamp, wall_clock_ms
from meshdex.node.indexing import IndexManager
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync.engine import SyncEngine
from meshdex.sync.identity import load_identity
from meshdex.sync.service import BUILD_DEBOUNCE_S, DebouncedBuilder
from meshdex.sync.transport import pinned_channel
from meshdex.sync.wire import MAX_BATCH_CHANGES, ChangeBatch, CollectionConfig
from sync_support import (
    UNBUILT,
    digest_of,
    pair,
    start_sync_node,
    stop_sync_node,
    tick_past,
    wait_for,
)


@pytest.fixture
def manual(tmp_path: Path):
    """Two paired nodes whose continuous sync is off: sessions run when a test says."""
    a, b = (start_sync_node(tmp_path, name) for name in ("a", "b"))
    for node in (a, b):
        node.service.scheduler.stop()
    yield a, b
    for node in (a, b):
        stop_sync_node(node)


def _session(node):
    [report] = node.service.sync_now()
    assert report.error is None and not any(c.error for c in report.collections), report
    return report


def test_continuous_sync_both_ways_with_tombstones(tmp_path: Path) -> None:
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    try:
        a.node.create_collection("notes", embedder=UNBUILT,
                                 chunking=ChunkingParams(max_chars=300, overlap_chars=30))
        a.add("notes", {"x": "from a", "y": "also from a"})
        pair(a, b)
        wait_for(lambda: b.texts("notes") == {"x": "from a", "y": "also from a"},
                 what="a's notes on b")
        received = b.node.get_collection("notes")
        assert received.embedder == UNBUILT
        assert received.chunking == ChunkingParams(max_chars=300, overlap_chars=30)
        b.add("notes", {"z": "from b"})
        b.node.delete_documents("notes", ["x"])
        expected = {"y": "also from a", "z": "from b"}
        wait_for(lambda: a.texts("notes") == expected, what="b's add and delete on a")
        assert b.texts("notes") == expected
        assert a.node.get_collection("notes").tombstone_count == 1
    finally:
        stop_sync_node(a)
        stop_sync_node(b)


def test_a_losing_concurrent_edit_is_kept_as_a_conflict(manual) -> None:
    a, b = manual
    pair(a, b)
    a.add("notes", {"doc": "first"})
    _session(a)
    assert b.texts("notes") == {"doc": "first"}
    a.add("notes", {"doc": "edited on a"})
    tick_past(a)
    b.add("notes", {"doc": "edited on b, later"})  # newer stamp: wins everywhere
    report = _session(a)
    assert a.texts("notes") == b.texts("notes") == {"doc": "edited on b, later"}
    assert report.collections[0].conflicts == 1
    # a's edit was overwritten on a before b ever saw it: a keeps it
    [conflict] = a.node.store.conflicts("notes")
    assert (conflict.doc_id, conflict.text) == ("doc", "edited on a")
    # another process, as a person would run it beside the serving node: the devices by the
    # names they are paired under (this one is "this device"), not by their store ids
    listed = _conflicts_command(a)
    b_here = a.service.trust.get(b.device_id).name
    assert listed.startswith("notes/doc: kept the losing version (11 chars) written "), listed
    assert listed.rstrip().endswith(f"by {b_here}") and "by this device;" in listed
    assert a.node.store.device_id not in listed and b.node.store.device_id not in listed
    [record] = json.loads(_conflicts_command(a, "--json"))  # raw fields and readable ones
    assert (record["origin_device"], record["origin"]) == (a.node.store.device_id,
                                                           "this device")
    assert record["winner_origin"] == b_here
    assert record["losing_hlc"] == conflict.hlc.to_str()
    written = datetime.fromisoformat(record["losing_time"].replace("Z", "+00:00"))
    assert round(written.timestamp() * 1000) == conflict.hlc.physical_ms
    assert record["losing_time"].endswith("Z")
    _session(a)  # the same exchange again records nothing new
    _session(b)
    assert a.node.store.count_conflicts("notes") == 1


def _conflicts_command(node, *args: str) -> str:
    listed = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir",
                             str(node.node.data_dir), "conflicts", *args],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_an_edit_made_after_seeing_the_other_is_not_a_conflict(manual) -> None:
    a, b = manual
    pair(a, b)
    a.add("notes", {"doc": "first"})
    _session(a)
    b.add("notes", {"doc": "b edits what it received"})
    _session(a)
    a.add("notes", {"doc": "a edits b's version"})
    _session(b)
    assert a.texts("notes") == b.texts("notes") == {"doc": "a edits b's version"}
    assert a.node.store.conflicts("notes") == b.node.store.conflicts("notes") == []


@pytest.mark.parametrize("newer_side", ["a", "b"])
@pytest.mark.parametrize("edit", ["delete", "same text"])
def test_the_same_change_made_on_both_sides_is_not_a_conflict(manual, edit, newer_side) -> None:
    """Both devices deleting a document, or writing the same version of it, agree: nothing
    lost, so nothing to show in `meshdex conflicts`, whichever stamp wins."""
    a, b = manual
    pair(a, b)
    a.add("notes", {"doc": "first", "other": "kept"})
    _session(a)

    def change(node) -> None:
        if edit == "delete":
            node.node.delete_documents("notes", ["doc"])
        else:
            node.add("notes", {"doc": "the same fix, made twice"})

    older, newer = (b, a) if newer_side == "a" else (a, b)
    change(older)
    tick_past(older)
    change(newer)  # the version that wins; the other arrives where it is older than the own
    report = _session(a)
    _session(b)
    expected = {"other": "kept"} if edit == "delete" else {
        "doc": "the same fix, made twice", "other": "kept"}
    assert a.texts("notes") == b.texts("notes") == expected
    assert report.collections[0].conflicts == 0
    assert a.node.store.conflicts("notes") == b.node.store.conflicts("notes") == []


def test_an_incoming_edit_that_loses_is_kept_where_it_arrives(manual) -> None:
    a, b = manual
    pair(a, b)
    a.add("notes", {"doc": "first"})
    _session(a)
    b.add("notes", {"doc": "older edit on b"})
    tick_past(b)
    a.add("notes", {"doc": "newer edit on a"})
    _session(b)  # b pulls a's newer version (keeps its own), then pushes nothing new
    _session(a)
    assert a.texts("notes") == b.texts("notes") == {"doc": "newer edit on a"}
    # kept on b where it lost, and replicated to a: one record each, not one per detection
    assert [c.text for c in b.node.store.conflicts("notes")] == ["older edit on b"]
    assert [c.text for c in a.node.store.conflicts("notes")] == ["older edit on b"]


def test_conflict_records_replicate_once_and_do_not_go_round(manual, tmp_path) -> None:
    a, b = manual
    c = start_sync_node(tmp_path, "c")
    try:
        c.service.scheduler.stop()
        pair(a, b)
        pair(b, c)  # c never talks to a: it learns a's conflict record through b
        a.add("notes", {"doc": "first"})
        _session(a)
        a.add("notes", {"doc": "edited on a"})
        tick_past(a)
        b.add("notes", {"doc": "edited on b, later"})
        _session(a)  # a keeps its overwritten edit, then pushes the record to b
        _session(c)
        digests = [digest_of(n.node.store, "notes") for n in (a, b, c)]
        assert [d["conflicts"] for d in digests] == [digests[0]["conflicts"]] * 3
        [(doc_id, *_, text, _, _)] = digests[0]["conflicts"]
        assert (doc_id, text) == ("doc", "edited on a")
        settled = [n.node.store.last_seq for n in (a, b, c)]
        for node in (a, c, a, c):
            _session(node)
        assert [n.node.store.last_seq for n in (a, b, c)] == settled, "no record re-kept"
    finally:
        stop_sync_node(c)


def test_batches_are_bounded_and_a_cut_session_resumes_without_resending(manual) -> None:
    a, b = manual
    count = MAX_BATCH_CHANGES * 2 + 17
    a.add("notes", {f"d{i:04}": f"document {i}" for i in range(count)})
    batches = list(a.service.engine.outgoing("notes", after_seq=0, receiver_store_id="b",
                                             receiver_watermarks={}, with_config=True))
    assert [len(batch.changes) for batch in batches] == [MAX_BATCH_CHANGES,
                                                         MAX_BATCH_CHANGES, 17]
    pair(a, b)
    b.service.engine.apply(batches[0])  # the session was cut after one batch
    b.service.engine.apply(batches[0])  # and that batch delivered twice
    assert len(b.texts("notes")) == MAX_BATCH_CHANGES
    report = _session(b)
    assert report.collections[0].received == count - MAX_BATCH_CHANGES
    assert len(b.texts("notes")) == count
    assert sum(1 for _ in b.node.store.changes_since(0)) == count  # nothing applied twice


def test_collections_with_network_embedders_are_never_built_without_opt_in(tmp_path, caplog):
    with Node.open(tmp_path / "n") as node:
        node.create_collection("remote", embedder=UNBUILT)
        builder = DebouncedBuilder(node, allow_network_embedders=False)
        caplog.set_level(logging.WARNING)
        builder.request("remote")
        wait_for(lambda: "not building 'remote'" in caplog.text, what="the refusal")
        builder.stop()
        assert node.indexes.summaries() == []



def test_requests_repeated_faster_than_the_debounce_do_not_starve_the_build(tmp_path):
    """A session every sync_interval_s (0.5 s in tests) asks again for the same build; each
    ask must not push it back, or a collection is never built while the peer is there."""
    embedder = HashingEmbedder()
    with Node.open(tmp_path / "n") as node:
        node.indexes = IndexManager(node.store, embedder_factory=lambda info: embedder)
        node.create_collection("c")
        node.upsert_documents("c", [DocumentInput(id="d", text="apples and pears")])
        builder = DebouncedBuilder(node, allow_network_embedders=False)
        try:
            deadline = time.monotonic() + 4 * BUILD_DEBOUNCE_S
            while node.indexes.manifest("c") is None and time.monotonic() < deadline:
                builder.request("c")
                time.sleep(BUILD_DEBOUNCE_S / 4)
            assert node.indexes.manifest("c") is not None, "the build never ran"
        finally:
            builder.stop()

# --- merging is independent of delivery order ----------------------------------------------

DEVICES = ("dev-a", "dev-b", "dev-c")
change_specs = st.lists(
    st.tuples(st.sampled_from(["p", "q", "r"]), st.booleans(), st.integers(1, 40),
              st.sampled_from(DEVICES), st.sampled_from(["one", "two", "three"])),
    min_size=1, max_size=12, unique_by=lambda spec: (spec[2], spec[3]))


def _changes(specs) -> list[RemoteChange]:
    seqs = itertools.count(1)
    return [RemoteChange(doc_id=doc, op=ChangeOp.DELETE if deleted else ChangeOp.UPSERT,
                         hlc=HLCTimestamp(physical_ms=1_000_000 + ms, logical=0, device_id=dev),
                         origin_device=dev, origin_seq=next(seqs),
                         text=None if deleted else f"{text} by {dev}")
            for doc, deleted, ms, dev, text in specs]


def _documents(node: Node) -> tuple[dict, list]:
    live = {d.id: d.to_dict() for d in node.store.iter_documents("c")}
    final_deleted = sorted({c.doc_id for c in node.store.changes_since(0)} - set(live))
    return live, final_deleted


@settings(max_examples=25, deadline=None)
@given(change_specs, st.randoms(use_true_random=False))
def test_same_changes_in_any_order_with_duplicates_give_identical_documents(specs, rnd):
    changes = _changes(specs)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        identity = load_identity(Path(folder) / "id")
        for replica in range(3):
            delivery = changes + [rnd.choice(changes) for _ in range(3)]
            random.Random(rnd.random()).shuffle(delivery)
            with Node.open(Path(folder) / f"r{replica}") as node:
                engine = SyncEngine(node=node, identity=identity)
                config = CollectionConfig(name="c", embedder=UNBUILT, chunking=ChunkingParams())
                for seq, change in enumerate(delivery, 1):
                    engine.apply(ChangeBatch(collection="c", changes=[change], last_seq=seq,
                                             sender_store_id="peer", config=config))
                results.append(_documents(node))
    assert results[0] == results[1] == results[2]


def test_a_changed_hint_makes_the_receiver_sync_with_the_sender_at_once(tmp_path) -> None:
    a = start_sync_node(tmp_path, "a", sync_interval_s=3600.0)
    b = start_sync_node(tmp_path, "b", sync_interval_s=3600.0)
    try:
        pair(a, b)
        b.service.scheduler.stop()  # b will not push by itself
        wait_for(lambda: b.service.trust.get(a.device_id).last_sync is not None
                 or a.service.trust.get(b.device_id).last_sync is not None,
                 what="the first reconcile after pairing")
        b.add("notes", {"hinted": "arrives because of the hint"})
        time.sleep(1.0)
        assert "hinted" not in a.texts("notes")  # a's next reconcile is an hour away
        with pinned_channel(a.sync_address, b.service.trust.get(a.device_id).cert_pem,
                            identity=b.service.identity) as channel:
            sync_pb2_grpc.MeshdexSyncStub(channel).Changed(
                pb.ChangedRequest(collections=["notes"]), timeout=10)
        wait_for(lambda: "hinted" in a.texts("notes"), timeout_s=10, what="a to pull on hint")
    finally:
        stop_sync_node(a)
        stop_sync_node(b)


def test_a_change_stamped_far_in_the_future_is_refused_and_changes_nothing(tmp_path) -> None:
    """Issue 8 item 6, on sync: a peer's clock days ahead would win last-writer-wins forever."""

    identity = load_identity(tmp_path / "id")
    with Node.open(tmp_path / "r") as node:
        engine = SyncEngine(node=node, identity=identity)
        config = CollectionConfig(name="c", embedder=UNBUILT, chunking=ChunkingParams())
        node.create_collection("c", embedder=UNBUILT)
        node.upsert_documents("c", [DocumentInput(id="doc", text="honest local text")])
        days_ahead = wall_clock_ms() + 11 * 86_400_000
        honest = HLCTimestamp(physical_ms=wall_clock_ms(), logical=0, device_id="peer")
        future = HLCTimestamp(physical_ms=days_ahead, logical=0, device_id="peer")
        batch = ChangeBatch(collection="c", last_seq=2, config=config, sender_store_id="peer",
                            changes=[
            RemoteChange(doc_id="other", op=ChangeOp.UPSERT, hlc=honest, origin_device="peer",
                         origin_seq=1, text="fine on its own"),
            RemoteChange(doc_id="doc", op=ChangeOp.UPSERT, hlc=future, origin_device="peer",
                         origin_seq=2, text="from the future"),
        ])
        with pytest.raises(ClockSkew, match="ahead of this device's clock"):
            engine.apply(batch)
        assert {d.id: d.text for d in node.store.iter_documents("c")} == {
            "doc": "honest local text"}
        assert node.store.applied_cursor("peer", "c") == 0
