"""Where replication stands with each peer, kept in the store: the applied cursor moves with
the batch it covers in one transaction, both cursors survive reopening and never move back,
and the progress files of earlier versions are taken over once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.index.errors import InvalidArgument
from meshdex.node.hlc import HLCTimestamp, wall_clock_ms
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.service import Node
from meshdex.node.store import Store
from meshdex.node.store.changelog import ChangeLog
from meshdex.sync.engine import SyncEngine
from meshdex.sync.files import sync_dir
from meshdex.sync.identity import load_identity
from meshdex.sync.wire import ChangeBatch, CollectionConfig
from sync_support import UNBUILT

CONFIG = CollectionConfig(name="c", embedder=UNBUILT, chunking=ChunkingParams())


def _change(doc_id: str, seq: int, text: str | None = "text") -> RemoteChange:
    return RemoteChange(doc_id=doc_id, op=ChangeOp.UPSERT if text is not None else
                        ChangeOp.DELETE, hlc=HLCTimestamp(physical_ms=wall_clock_ms(),
                                                          logical=seq, device_id="peer"),
                        origin_device="peer", origin_seq=seq, text=text)


@pytest.fixture
def engine(tmp_path: Path):
    with Node.open(tmp_path / "n") as node:
        yield SyncEngine(node=node, identity=load_identity(tmp_path / "n"))


def _batch(changes: list[RemoteChange], last_seq: int) -> ChangeBatch:
    return ChangeBatch(collection="c", changes=changes, last_seq=last_seq,
                       sender_store_id="peer", config=CONFIG)


def test_both_cursors_start_at_zero_only_move_forward_and_survive_reopening(
        tmp_path: Path) -> None:
    with Node.open(tmp_path / "n") as node:
        engine = SyncEngine(node=node, identity=load_identity(tmp_path / "n"))
        engine.apply(_batch([_change("x", 1)], last_seq=10))
        engine.apply(_batch([], last_seq=4))  # a late, older batch never moves it back
        engine.acknowledge("peer", "c", 1)
        assert node.store.applied_cursor("other-peer", "c") == 0
    with Store.open(tmp_path / "n", readonly=True) as store:
        assert (store.applied_cursor("peer", "c"), store.peer_cursor("peer", "c")) == (10, 1)


def test_an_acknowledgement_past_this_log_is_refused(engine: SyncEngine) -> None:
    engine.apply(_batch([_change("x", 1)], last_seq=1))
    with pytest.raises(InvalidArgument, match="acknowledged seq"):
        engine.acknowledge("peer", "c", engine.store.last_seq + 1)


def test_the_cursor_moves_in_the_transaction_that_applies_the_batch(
        engine: SyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.apply(_batch([_change("x", 1)], last_seq=1))

    def crash(*args, **kwargs):
        raise OSError("killed between the batch and its cursor")

    monkeypatch.setattr(ChangeLog, "set_applied_cursor", crash)
    with pytest.raises(OSError):
        engine.apply(_batch([_change("y", 2), _change("x", 3, text=None)], last_seq=3))
    assert [d.id for d in engine.store.iter_documents("c")] == ["x"], "all of it or none"
    monkeypatch.undo()
    assert engine.store.applied_cursor("peer", "c") == 1
    outcome = engine.apply(_batch([_change("y", 2), _change("x", 3, text=None)], last_seq=3))
    assert (outcome.applied, engine.store.applied_cursor("peer", "c")) == (2, 3)
    assert [d.id for d in engine.store.iter_documents("c")] == ["y"]


def test_progress_files_of_earlier_versions_are_taken_over_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "n"
    with Node.open(data_dir) as node:
        node.create_collection("c", embedder=UNBUILT)
        node.upsert_documents("c", [DocumentInput(id="doc", text="the winner")])
    folder = sync_dir(data_dir)
    (folder / "progress.json").write_text(json.dumps({"cursors": {"P/c": 9}, "acks": {}}))
    loser = {"collection": "c", "doc_id": "doc", "losing_hlc": "0000018c00000000-00000000-peer",
             "winning_hlc": "0000018c00000001-00000000-peer", "origin_device": "peer",
             "deleted": False, "text": "the losing edit", "metadata": {"k": 1},
             "source": None, "recorded_at": 1.0}
    (folder / "conflicts.jsonl").write_text(json.dumps(loser) + "\n" + '{"collection": "c", "d')
    with Node.open(data_dir) as node:
        SyncEngine(node=node, identity=load_identity(data_dir))
        SyncEngine(node=node, identity=load_identity(data_dir))  # a second open finds nothing
        [kept] = node.store.conflicts("c")
    assert (kept.doc_id, kept.text, kept.metadata, kept.hlc.to_str()) == (
        "doc", "the losing edit", {"k": 1}, loser["losing_hlc"])
    assert sorted(p.name for p in folder.iterdir() if "progress" in p.name
                  or "conflicts" in p.name) == []
