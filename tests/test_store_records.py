"""Store format 3 records: every record type round-trips through real LMDB, and a damaged
record gives ``StoreCorrupt`` naming its key instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from meshdex.index.chunking import ChunkingParams, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.errors import StoreCorrupt
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.store import Store
from meshdex.node.store.blocks import Block, TextRef
from meshdex.node.store.codec import RecordReader, put_varint
from meshdex.node.store.collections import CollectionRecord, CollectionStats
from meshdex.node.store.devices import Devices
from meshdex.node.store.documents import DocumentRecord

CHUNKING = ChunkingParams(max_chars=50, overlap_chars=10)
TEXT = "First sentence here. Second sentence there.\r\nA line after a CRLF break, and more."
STAMP = HLCTimestamp(physical_ms=1_790_000_000_123, logical=3, device_id="dev-a")


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as opened:
        opened.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        yield opened


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**64 - 1])
def test_varints_round_trip(value: int) -> None:
    out = bytearray()
    put_varint(out, value)
    reader = RecordReader(bytes(out), what="varint", key=b"k")
    assert reader.varint() == value
    reader.end()


def test_varints_in_a_row_then_bad_ones_name_the_record() -> None:
    out = bytearray()
    for value in (300, 0, 2**40):
        put_varint(out, value)
    reader = RecordReader(bytes(out) + b"\xff", what="document", key=b"doc-key")
    assert [reader.varint(), reader.varint(), reader.varint()] == [300, 0, 2**40]
    with pytest.raises(StoreCorrupt, match="document.*doc-key.*record ends early"):
        reader.varint()
    with pytest.raises(StoreCorrupt, match="varint longer than 64 bits"):
        RecordReader(b"\xff" * 11 + b"\x01", what="document", key=b"doc-key").varint()


DOCUMENT_RECORDS = [
    DocumentRecord(doc_id="live", seq=5, hlc=STAMP, origin_device="dev-a", origin_seq=5,
                   deleted=False, source="/x/y.txt", metadata={"lang": "en", "n": [1, 2]},
                   text=TextRef(3, 17), spans=((0, 20), (21, 44), (40, 80))),
    DocumentRecord(doc_id="relayed", seq=9, hlc=STAMP, origin_device="dev-b", origin_seq=2,
                   deleted=False, source=None, metadata={}, text=TextRef(1, 0), spans=()),
    DocumentRecord(doc_id="gone", seq=12, hlc=STAMP, origin_device="dev-a", origin_seq=12,
                   deleted=True, source="/old", metadata={}, text=None, spans=()),
    DocumentRecord(doc_id="book", seq=14, hlc=STAMP, origin_device="dev-a", origin_seq=14,
                   deleted=False, source=None, metadata={}, text=TextRef(2, 0),
                   spans=((0, 70_000), (69_000, 140_000))),  # a passage longer than u16
]


def test_a_passage_span_takes_four_bytes_unless_it_needs_more(store: Store) -> None:
    env = store._parts.env
    devices = Devices(devices_db=env.dbs.devices, meta_db=env.dbs.meta)

    def size(*spans: tuple[int, int]) -> int:
        record = DocumentRecord(doc_id="d", seq=3, hlc=STAMP, origin_device="dev-a",
                                origin_seq=3, deleted=False, source=None, metadata={},
                                text=TextRef(1, 0), spans=spans)
        with env.lmdb.begin(write=True) as txn:
            encoded = record.encode(txn, devices)
            assert DocumentRecord.decode(b"k", encoded, doc_id="d", txn=txn,
                                         devices=devices) == record
        return len(encoded)

    assert size((0, 400), (380, 800)) - size((0, 400)) == 4
    # One span too far for u16 puts the whole record back on u32 (start, end) pairs.
    far = size((0, 400), (380, 800), (70_000, 70_400))
    assert far - size((0, 400), (380, 800)) == 3 * 8 - 2 * 4


@pytest.mark.parametrize("record", DOCUMENT_RECORDS, ids=lambda r: r.doc_id)
def test_document_records_round_trip(store: Store, record: DocumentRecord) -> None:
    env = store._parts.env
    devices = Devices(devices_db=env.dbs.devices, meta_db=env.dbs.meta)
    with env.lmdb.begin(write=True) as txn:
        encoded = record.encode(txn, devices)
        decoded = DocumentRecord.decode(b"key", encoded, doc_id=record.doc_id, txn=txn,
                                        devices=devices)
    assert decoded == record
    assert len(encoded) < 40 + len(record.source or "") + 30 * bool(record.metadata)


@pytest.mark.parametrize("stats", [
    CollectionStats(),
    CollectionStats(documents=3, passages=7, tombstones=1, next_block=4, max_hlc=STAMP),
])
def test_collection_stats_round_trip(stats: CollectionStats) -> None:
    assert CollectionStats.decode(b"k", stats.encode()) == stats


def test_collection_record_and_block_round_trip() -> None:
    record = CollectionRecord(id=7, name="c", embedder=EmbedderSpec(precision="bf16"),
                              chunking=CHUNKING, created_ms=1, updated_ms=2)
    assert CollectionRecord.decode("c", record.encode()) == record
    block = Block(members=[("a", "héllo".encode()), ("b", b""), ("c", b"x" * 5000)])
    assert Block.decode(b"k", block.encode(), lambda dictionary_id: None) == block


def test_every_record_type_round_trips_through_the_store(tmp_path: Path) -> None:
    remote = HLCTimestamp(physical_ms=5, logical=0, device_id="peer")
    with Store.open(tmp_path) as store:
        store.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        store.upsert_documents("c", [
            DocumentInput(id="d1", text=TEXT, metadata={"k": "v"}, source="/d1"),
            DocumentInput(id="d2", text="Short one."),
        ])
        store.delete_documents("c", ["d2"])
        store.apply_remote_changes("c", [RemoteChange(
            doc_id="r", op=ChangeOp.UPSERT, hlc=remote, origin_device="peer", origin_seq=4,
            text="From the peer.")])
        store.set_peer_cursor("peer", "c", 2)
        before = (
            store.get_document("c", "d1"), store.get_document("c", "r"),
            list(store.changes_since(0)), store.state("c"), store.get_collection("c"),
            list(store.iter_passages("c")), store.peer_cursor("peer", "c"),
        )
    with Store.open(tmp_path, readonly=True) as store:
        after = (
            store.get_document("c", "d1"), store.get_document("c", "r"),
            list(store.changes_since(0)), store.state("c"), store.get_collection("c"),
            list(store.iter_passages("c")), store.peer_cursor("peer", "c"),
        )
    assert after == before
    d1 = after[0]
    assert (d1.text, d1.metadata, d1.source) == (TEXT, {"k": "v"}, "/d1")
    assert [(c.doc_id, c.op, c.origin_device) for c in after[2]] == [
        ("d1", ChangeOp.UPSERT, d1.hlc.device_id), ("d2", ChangeOp.DELETE, d1.hlc.device_id),
        ("r", ChangeOp.UPSERT, "peer")]
    assert after[3].watermarks == {d1.hlc.device_id: 3, "peer": 4}
    assert after[6] == 2


def _corrupt(store: Store, db_name: str, key: bytes, value: bytes) -> None:
    with store._parts.env.lmdb.begin(write=True) as txn:
        txn.put(key, value, db=store._parts.env.dbs.all()[db_name])


def _only_key(store: Store, db_name: str) -> bytes:
    with store._parts.env.lmdb.begin() as txn:
        keys = [bytes(k) for k in txn.cursor(db=store._parts.env.dbs.all()[db_name]).iternext(
            values=False)]
    return keys[0]



def _passage_at(store: Store, key: bytes) -> list[str]:
    label = int.from_bytes(key[4:12], "big")  # passages keys: collection u32 + label u64 + id
    return store.passage_texts("c", np.array([label], dtype=np.uint64))


@pytest.mark.parametrize(("db_name", "garbage", "read"), [
    ("documents", b"\xff\x01", lambda s, key: s.get_document("c", "d")),
    ("documents", b"\x08", lambda s, key: list(s.iter_documents("c"))),
    ("blocks", b"not zstd at all", lambda s, key: s.get_document("c", "d")),
    ("changes", b"\x00\x00\x00\x01nobody", lambda s, key: list(s.changes_since(0))),
    ("stats", b"\xff", lambda s, key: s.get_collection("c")),
    ("collections", b"{not json", lambda s, key: s.list_collections()),
    ("passages", b"\xff", _passage_at),
])
def test_a_corrupted_record_raises_store_corrupt_naming_its_key(
    tmp_path: Path, db_name: str, garbage: bytes, read
) -> None:
    with Store.open(tmp_path) as store:
        store.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        store.upsert_documents("c", [DocumentInput(id="d", text=TEXT)])
        key = _only_key(store, db_name)
        _corrupt(store, db_name, key, garbage)
        with pytest.raises(StoreCorrupt) as caught:
            read(store, key)
    assert repr(key) in str(caught.value)


def test_a_block_that_lost_its_text_raises_store_corrupt(store: Store) -> None:
    store.upsert_documents("c", [DocumentInput(id="d", text=TEXT)])
    label = passage_label(store.get_document("c", "d").passage_keys[0])
    with store._parts.env.lmdb.begin(write=True) as txn:
        txn.delete(_only_key(store, "blocks"), db=store._parts.env.dbs.blocks)
    with pytest.raises(StoreCorrupt, match="refers to a block that is not there"):
        store.passage_texts("c", np.array([label], dtype=np.uint64))


def test_raw_lmdb_sees_no_json_or_hex_in_documents(store: Store) -> None:
    store.upsert_documents("c", [DocumentInput(id="d", text=TEXT)])
    with store._parts.env.lmdb.begin() as txn:
        value = bytes(txn.get(_only_key(store, "documents"), db=store._parts.env.dbs.documents))
    assert not value.startswith(b"{") and len(value) < 40
