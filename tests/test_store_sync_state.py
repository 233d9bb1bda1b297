"""What sync keeps in the store: durable per-peer cursors, the collapsed change log a peer
resumes from, and conflict records for versions that lose last-writer-wins to a concurrent edit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.store import Store


def open_store(path: Path) -> Store:
    store = Store.open(path)
    for name in ("c", "other"):
        if not store.has_collection(name):
            store.create_collection(name, embedder=EmbedderSpec(), chunking=ChunkingParams())
    return store


def ship(sender: Store, receiver: Store, since: int = 0) -> list[bool]:
    """Sync's document step: the sender's changes since a cursor, with current contents."""
    remote = []
    for change in sender.changes_since(since, collection="c"):
        doc = sender.get_document("c", change.doc_id) if change.op is ChangeOp.UPSERT else None
        remote.append(RemoteChange(
            doc_id=change.doc_id, op=change.op, hlc=change.hlc,
            origin_device=change.origin_device, origin_seq=change.origin_seq,
            text=doc.text if doc else None, metadata=doc.metadata if doc else {},
            source=doc.source if doc else None))
    return receiver.apply_remote_changes("c", remote)


@pytest.fixture
def pair(tmp_path: Path):
    with open_store(tmp_path / "a") as a, open_store(tmp_path / "b") as b:
        yield a, b


def test_peer_cursors_are_per_peer_and_collection_monotonic_and_durable(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id=str(i), text=f"t{i}") for i in range(5)])
        assert store.peer_cursor("peer-1", "c") == 0
        assert store.set_peer_cursor("peer-1", "c", 3) == 3
        assert store.set_peer_cursor("peer-1", "c", 2) == 3, "an old ack never lowers it"
        store.set_peer_cursor("peer-2", "other", 5)
        with pytest.raises(InvalidArgument, match=r"\[0, 5\]"):
            store.set_peer_cursor("peer-1", "c", 6)
    with Store.open(tmp_path, readonly=True) as store:
        assert [store.peer_cursor(p, c) for p, c in
                [("peer-1", "c"), ("peer-1", "other"), ("peer-2", "other"), ("peer-2", "c")]
                ] == [3, 0, 5, 0]


def test_a_peer_resuming_from_its_cursor_gets_each_changed_document_once_at_its_latest(
    pair: tuple[Store, Store],
) -> None:
    a, b = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="one"), DocumentInput(id="y", text="y")])
    assert ship(a, b) == [True, True]
    cursor = a.last_seq
    a.set_peer_cursor(b.device_id, "c", cursor)
    a.upsert_documents("c", [DocumentInput(id="x", text="two")])
    a.upsert_documents("c", [DocumentInput(id="x", text="three")])
    a.delete_documents("c", ["y"])
    changes = list(a.changes_since(a.peer_cursor(b.device_id, "c"), collection="c"))
    assert [(c.doc_id, c.op) for c in changes] == [("x", ChangeOp.UPSERT), ("y", ChangeOp.DELETE)]
    assert ship(a, b, since=cursor) == [True, True]
    assert [(d.id, d.text) for d in b.iter_documents("c")] == [("x", "three")]
    assert ship(a, b, since=cursor) == [False, False], "a replay changes nothing"
    assert b.count_conflicts("c") == 0


@pytest.mark.parametrize(("loser_ships_first", "devices_with_conflict"), [
    (True, "ab"),  # a keeps the incoming loser, then b keeps its overwritten edit
    (False, "b"),  # b's edit is overwritten before it ever reaches a
])
def test_concurrent_edits_keep_the_losing_version_as_a_conflict(
    pair: tuple[Store, Store], loser_ships_first: bool, devices_with_conflict: str
) -> None:
    a, b = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="base")])
    ship(a, b)
    a.set_peer_cursor(b.device_id, "c", a.last_seq)
    b.set_peer_cursor(a.device_id, "c", b.last_seq)
    b.upsert_documents("c", [DocumentInput(id="x", text="b's edit", metadata={"by": "b"})])
    time.sleep(0.005)  # a later millisecond: a's stamp wins whatever the device ids
    a.upsert_documents("c", [DocumentInput(id="x", text="a's edit")])
    for sender, receiver in ([(b, a), (a, b)] if loser_ships_first else [(a, b), (b, a)]):
        ship(sender, receiver)
    assert {"a": a.count_conflicts("c"), "b": b.count_conflicts("c")} == {
        name: int(name in devices_with_conflict) for name in "ab"}
    for store in (a, b):
        assert store.get_document("c", "x").text == "a's edit"
    for store in [{"a": a, "b": b}[name] for name in devices_with_conflict]:
        (conflict,) = store.conflicts("c")
        assert (conflict.doc_id, conflict.text, conflict.metadata, conflict.op) == (
            "x", "b's edit", {"by": "b"}, ChangeOp.UPSERT)
        assert conflict.origin_device == b.device_id
        assert conflict.winner_hlc == a.get_document("c", "x").hlc > conflict.hlc
    before = (a.count_conflicts("c"), b.count_conflicts("c"))
    ship(a, b)
    ship(b, a)
    assert (a.count_conflicts("c"), b.count_conflicts("c")) == before, "replays add none"


def test_an_edit_made_after_seeing_the_other_is_not_a_conflict(pair: tuple[Store, Store]) -> None:
    a, b = pair
    a.upsert_documents("c", [DocumentInput(id="x", text="a wrote")])
    ship(a, b)
    a.set_peer_cursor(b.device_id, "c", a.last_seq)  # b acknowledged a's write
    b.upsert_documents("c", [DocumentInput(id="x", text="b edited a's text")])
    ship(b, a)
    assert a.get_document("c", "x").text == "b edited a's text"
    assert a.count_conflicts("c") == 0 and b.count_conflicts("c") == 0


def test_conflicts_survive_restart_and_go_with_their_collection(tmp_path: Path) -> None:
    with open_store(tmp_path / "a") as a, open_store(tmp_path / "b") as b:
        b.upsert_documents("c", [DocumentInput(id="x", text="b first")])
        time.sleep(0.005)
        a.upsert_documents("c", [DocumentInput(id="x", text="a later")])
        ship(b, a)
        assert a.count_conflicts("c") == 1
    with Store.open(tmp_path / "a") as a:
        assert a.conflicts("c")[0].text == "b first"
        a.drop_collection("c")
        a.create_collection("c", embedder=EmbedderSpec(), chunking=ChunkingParams())
        assert a.count_conflicts("c") == 0 and list(a.changes_since(0, collection="c")) == []


def test_compaction_drops_tombstones_once_every_peer_acknowledged_them(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id=str(i), text=f"t{i}") for i in range(4)])
        store.delete_documents("c", ["0", "1"])  # seq 5, 6
        store.compact()
        assert store.get_collection("c").tombstone_count == 2, "no peer cursor: kept"
        store.set_peer_cursor("peer-1", "c", 6)
        store.set_peer_cursor("peer-2", "c", 5)
        store.compact()
        assert store.get_collection("c").tombstone_count == 1, "peer-2 has not seen seq 6"
        assert [(c.doc_id, c.op) for c in store.changes_since(0, collection="c")] == [
            ("2", ChangeOp.UPSERT), ("3", ChangeOp.UPSERT), ("1", ChangeOp.DELETE)]
        store.set_peer_cursor("peer-2", "c", 6)
        store.compact()
        info = store.get_collection("c")
        assert (info.tombstone_count, info.document_count) == (0, 2)
        assert [c.doc_id for c in store.changes_since(0, collection="c")] == ["2", "3"]
        assert store.delete_documents("c", ["0"]) == ([], ["0"])


def test_compaction_names_the_stores_a_kept_tombstone_waits_for(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id=str(i), text=f"t{i}") for i in range(4)])
        store.delete_documents("c", ["0"])  # seq 5
        store.upsert_documents("c", [DocumentInput(id="4", text="t4")])  # seq 6
        store.set_peer_cursor("peer-ahead", "c", 6)
        store.set_peer_cursor("peer-behind", "c", 4)
        store.set_peer_cursor("peer-past-it", "c", 5)  # behind the log, not the tombstone
        report = store.compact(paired={"c": ["peer-ahead", ""]})
        assert (report.tombstones_dropped, report.tombstones_kept) == (0, 1)
        assert report.waiting_for == {"peer-behind", ""}
        report = store.compact(paired={"c": ["peer-ahead"]})
        assert (report.tombstones_kept, report.waiting_for) == (1, {"peer-behind"})


def test_forgotten_stores_hold_no_tombstone_back_and_are_known_as_forgotten(
        tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id="0", text="t0")])
        store.upsert_documents("other", [DocumentInput(id="x", text="x")])
        store.delete_documents("c", ["0"])
        store.delete_documents("other", ["x"])
        for collection in ("c", "other"):
            store.set_peer_cursor("gone", collection, 1)
            store.set_peer_cursor("here", collection, store.last_seq)
        assert store.cursor_holders() == {"gone", "here"}
        assert store.compact(paired={}).tombstones_kept == 2
        store.forget_peers({"gone"})
        assert (store.cursor_holders(), store.is_forgotten("gone"),
                store.is_forgotten("here")) == ({"here"}, True, False)
        report = store.compact(paired={})
        assert (report.tombstones_dropped, report.tombstones_kept) == (2, 0)
    with Store.open(tmp_path) as reopened:
        assert reopened.is_forgotten("gone")


def test_compaction_told_of_no_pairing_drops_every_tombstone(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id=str(i), text=f"t{i}") for i in range(4)])
        store.upsert_documents("other", [DocumentInput(id="x", text="kept")])
        store.delete_documents("c", ["0", "1"])
        store.delete_documents("other", ["x"])
        store.set_peer_cursor("peer-1", "other", 1)  # "other" was synced, up to before the delete
        report = store.compact(paired={})
        assert report.tombstones_dropped == 2
        info = store.get_collection("c")
        assert (info.tombstone_count, info.document_count) == (0, 2)
        assert [c.doc_id for c in store.changes_since(0, collection="c")] == ["2", "3"]
        assert store.get_collection("other").tombstone_count == 1, "peer-1 has not seen it"
        assert store.delete_documents("c", ["0"]) == ([], ["0"])
    with Store.open(tmp_path) as reopened:
        assert reopened.get_collection("c").tombstone_count == 0


def test_compaction_waits_for_every_paired_peer_sharing_the_collection(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.upsert_documents("c", [DocumentInput(id=str(i), text=f"t{i}") for i in range(4)])
        store.delete_documents("c", ["0", "1"])  # seq 5, 6
        for paired in ({"c": [""]}, {"c": ["peer-new"]}):  # not met yet / never acknowledged
            assert store.compact(paired=paired).tombstones_dropped == 0
        store.set_peer_cursor("peer-1", "c", 6)
        assert store.compact(paired={"c": ["peer-1", ""]}).tombstones_dropped == 0
        assert store.compact(paired={"c": ["peer-1"], "other": [""]}).tombstones_dropped == 2
        assert store.get_collection("c").tombstone_count == 0
