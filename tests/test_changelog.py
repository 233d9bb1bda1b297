"""The per-device change log: every write gets the next sequence number, in order, across
restarts; a document keeps only its latest entry; readers resume from any sequence number;
collection state gives watermarks."""

from __future__ import annotations

from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.records import ChangeOp, DocumentInput
from meshdex.node.store import Store, content_hash


def doc(doc_id: str, text: str) -> DocumentInput:
    return DocumentInput(id=doc_id, text=text)


def open_store(path: Path) -> Store:
    store = Store.open(path)
    for name in ("a", "b"):
        if not store.has_collection(name):
            store.create_collection(name, embedder=EmbedderSpec(), chunking=ChunkingParams())
    return store


def test_every_write_gets_the_next_sequence_number_and_supersedes_the_last(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("a", [doc("x", "one"), doc("y", "two")])
        store.upsert_documents("a", [doc("x", "one")])  # unchanged: not logged
        store.upsert_documents("b", [doc("x", "three")])
        store.delete_documents("a", ["y", "never-there"])
        store.upsert_documents("a", [doc("x", "one, edited")])
        changes = list(store.changes_since(0))
    # seq 1 (a/x) and 2 (a/y) were superseded by 5 and 4: one entry per document remains
    assert [(c.seq, c.collection, c.doc_id, c.op) for c in changes] == [
        (3, "b", "x", ChangeOp.UPSERT),
        (4, "a", "y", ChangeOp.DELETE),
        (5, "a", "x", ChangeOp.UPSERT),
    ]
    stamps = [c.hlc for c in changes]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert changes[2].content_hash == content_hash("one, edited")
    assert changes[1].content_hash is None
    assert {c.origin_device for c in changes} == {changes[0].hlc.device_id}
    assert [c.origin_seq for c in changes] == [3, 4, 5]


@pytest.mark.parametrize(
    ("since", "collection", "expected_seqs"),
    [
        (0, None, [1, 2, 3, 4]),
        (2, None, [3, 4]),
        (4, None, []),
        (99, None, []),
        (0, "b", [2, 4]),
        (2, "a", [3]),
    ],
)
def test_changes_since_resumes_from_any_sequence(
    tmp_path: Path, since: int, collection: str | None, expected_seqs: list[int]
) -> None:
    with open_store(tmp_path) as store:
        for name, doc_id in (("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")):
            store.upsert_documents(name, [doc(doc_id, f"text {doc_id}")])
        seqs = [c.seq for c in store.changes_since(since, collection=collection)]
    assert seqs == expected_seqs


def test_negative_sequence_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path) as store, pytest.raises(InvalidArgument, match=">= 0"):
        list(store.changes_since(-1))


def test_sequence_and_clock_continue_after_restart(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("a", [doc("x", "one"), doc("y", "two")])
        before = store.max_hlc
    with open_store(tmp_path) as store:
        assert store.last_seq == 2
        store.upsert_documents("a", [doc("z", "three")])
        change = list(store.changes_since(2))[0]
    assert change.seq == 3 and change.hlc > before


def test_state_reports_watermarks_and_newest_stamp(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.state("a").watermarks == {} and store.state("a").max_hlc is None
        store.upsert_documents("a", [doc("x", "one")])
        store.upsert_documents("b", [doc("x", "two")])
        store.delete_documents("a", ["x"])
        state_a, state_b = store.state("a"), store.state("b")
        changes = list(store.changes_since(0))
    assert [c.seq for c in changes] == [2, 3]  # the delete superseded seq 1
    assert state_a.watermarks == {changes[0].origin_device: 3}
    assert state_b.watermarks == {changes[0].origin_device: 2}
    assert state_a.max_hlc == changes[1].hlc and state_b.max_hlc == changes[0].hlc


def test_a_reader_iterating_sees_a_consistent_snapshot(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("a", [doc(str(i), f"text {i}") for i in range(5)])
        iterator = store.changes_since(0)
        first = next(iterator)
        store.upsert_documents("a", [doc("late", "written while reading")])
        rest = list(iterator)
        assert [c.seq for c in [first, *rest]] == [1, 2, 3, 4, 5]
        assert [c.seq for c in store.changes_since(5)] == [6]
