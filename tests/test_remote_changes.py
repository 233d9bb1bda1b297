"""Merging peers' writes into the store: last-writer-wins on HLC with device-id tie-break,
tombstones that stop resurrection, clock and watermark advance, convergence both ways."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.errors import DocumentNotFound
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.store import Store

CHUNKING = ChunkingParams(max_chars=40, overlap_chars=5)


def open_store(path: Path) -> Store:
    store = Store.open(path)
    store.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
    return store


@pytest.fixture
def pair(tmp_path: Path):
    with open_store(tmp_path / "a") as a, open_store(tmp_path / "b") as b:
        yield a, b


def ship(sender: Store, receiver: Store, since: int = 0) -> list[bool]:
    """What sync does: send the sender's changes since ``since`` with document contents."""
    remote = []
    for change in sender.changes_since(since, collection="c"):
        text = metadata = source = None
        if change.op is ChangeOp.UPSERT:
            doc = sender.get_document("c", change.doc_id)
            if doc.hlc != change.hlc:
                continue  # superseded by a later change in this batch
            text, metadata, source = doc.text, doc.metadata, doc.source
        remote.append(
            RemoteChange(
                doc_id=change.doc_id,
                op=change.op,
                hlc=change.hlc,
                origin_device=change.origin_device,
                origin_seq=change.origin_seq,
                text=text,
                metadata=metadata or {},
                source=source,
            )
        )
    return receiver.apply_remote_changes("c", remote)


def snapshot(store: Store) -> dict[str, tuple[str, dict, HLCTimestamp]]:
    return {d.id: (d.text, d.metadata, d.hlc) for d in store.iter_documents("c")}


def test_received_documents_match_the_sender(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.upsert_documents(
        "c",
        [
            DocumentInput(id="x", text="A longer text that is cut into passages. " * 3),
            DocumentInput(id="y", text="short", metadata={"k": [1, 2]}, source="/y"),
        ],
    )
    assert ship(a, b) == [True, True]
    assert snapshot(b) == snapshot(a)
    assert list(b.iter_passages("c")) == list(a.iter_passages("c"))
    received = list(b.changes_since(0))
    assert [(c.origin_device, c.origin_seq) for c in received] == [
        (a.device_id, 1),
        (a.device_id, 2),
    ]
    assert b.state("c").watermarks == {a.device_id: 2}
    assert ship(a, b) == [False, False], "a second delivery is ignored"
    assert b.last_seq == 2


def test_concurrent_edits_converge_to_the_newest_stamp(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="from a")])
    time.sleep(0.002)  # b's edit is the newer one (a tie on the clock has its own test)
    b.upsert_documents("c", [DocumentInput(id="x", text="from b")])
    a_seq, b_seq = a.last_seq, b.last_seq
    ship(a, b)
    ship(b, a)
    assert snapshot(a) == snapshot(b)
    newer = max(a.get_document("c", "x").hlc, b.get_document("c", "x").hlc)
    assert a.get_document("c", "x").hlc == newer
    applied = [*a.changes_since(a_seq, collection="c"), *b.changes_since(b_seq, collection="c")]
    assert len(applied) == 1, "only the loser applies the winner"
    assert len(a.conflicts("c")) == len(b.conflicts("c")) == 1  # the losing edit kept on both


def test_tie_on_time_is_broken_by_device_id(pair: tuple[Store, Store]) -> None:
    a, _ = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="local")])
    local = a.get_document("c", "x").hlc
    same_time = dict(physical_ms=local.physical_ms, logical=local.logical)
    lower = HLCTimestamp(**same_time, device_id=local.device_id[:-1] + "\x00")
    higher = HLCTimestamp(**same_time, device_id=local.device_id + "z")
    changes = [
        RemoteChange(
            doc_id="x", op=ChangeOp.UPSERT, hlc=lower, origin_device="p", origin_seq=1, text="loses"
        ),
        RemoteChange(
            doc_id="x", op=ChangeOp.UPSERT, hlc=higher, origin_device="q", origin_seq=1, text="wins"
        ),
    ]
    assert a.apply_remote_changes("c", changes) == [False, True]
    assert a.get_document("c", "x").text == "wins"
    assert a.state("c").watermarks == {a.device_id: 1, "p": 1, "q": 1}


def test_tombstones_win_when_newer_and_stop_older_writes(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="v1")])
    ship(a, b)
    b.delete_documents("c", ["x"])
    ship(b, a, since=1)
    with pytest.raises(DocumentNotFound):
        a.get_document("c", "x")
    stale = RemoteChange(
        doc_id="x",
        op=ChangeOp.UPSERT,
        hlc=HLCTimestamp(physical_ms=1, logical=0, device_id="z"),
        origin_device="z",
        origin_seq=9,
        text="resurrected?",
    )
    assert a.apply_remote_changes("c", [stale]) == [False]
    with pytest.raises(DocumentNotFound):
        a.get_document("c", "x")
    assert a.get_collection("c").tombstone_count == 1
    assert list(a.iter_passages("c")) == []


def test_delete_of_an_unknown_document_leaves_a_tombstone(pair: tuple[Store, Store]) -> None:
    a, _ = pair
    stamp = HLCTimestamp(physical_ms=10**12, logical=0, device_id="p")
    delete = RemoteChange(
        doc_id="ghost", op=ChangeOp.DELETE, hlc=stamp, origin_device="p", origin_seq=1
    )
    assert a.apply_remote_changes("c", [delete]) == [True]
    older = RemoteChange(
        doc_id="ghost",
        op=ChangeOp.UPSERT,
        hlc=HLCTimestamp(physical_ms=10**12 - 1, logical=0, device_id="q"),
        origin_device="q",
        origin_seq=1,
        text="too late",
    )
    assert a.apply_remote_changes("c", [older]) == [False]
    assert a.get_collection("c").tombstone_count == 1


def test_the_clock_moves_past_received_stamps_and_survives_restart(tmp_path: Path) -> None:
    future = HLCTimestamp(physical_ms=2**50, logical=7, device_id="p")
    with open_store(tmp_path) as store:
        store.apply_remote_changes(
            "c",
            [
                RemoteChange(
                    doc_id="r",
                    op=ChangeOp.UPSERT,
                    hlc=future,
                    origin_device="p",
                    origin_seq=1,
                    text="from the future",
                )
            ],
        )
        assert store.state("c").max_hlc == future
    with Store.open(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id="local", text="after")])
        assert store.get_document("c", "local").hlc > future


def test_an_invalid_change_rejects_the_batch_and_changes_nothing(pair: tuple[Store, Store]) -> None:
    a, _ = pair
    stamp = HLCTimestamp(physical_ms=5, logical=0, device_id="p")
    good = RemoteChange(
        doc_id="ok", op=ChangeOp.UPSERT, hlc=stamp, origin_device="p", origin_seq=1, text="fine"
    )
    no_text = RemoteChange(
        doc_id="bad", op=ChangeOp.UPSERT, hlc=stamp, origin_device="p", origin_seq=2
    )
    bad_metadata = RemoteChange(
        doc_id="bad",
        op=ChangeOp.UPSERT,
        hlc=stamp,
        origin_device="p",
        origin_seq=2,
        text="t",
        metadata={"x": float("nan")},
    )
    for bad, message in ((no_text, "carries no text"), (bad_metadata, "not plain JSON")):
        with pytest.raises(InvalidArgument, match=message):
            a.apply_remote_changes("c", [good, bad])
    assert a.last_seq == 0 and a.state("c").watermarks == {}
    assert list(a.iter_documents("c")) == []
