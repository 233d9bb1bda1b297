"""Store format 3 text blocks: small frames (one LMDB page), a zstd dictionary trained on the
collection and named by every block, format-2 blocks still readable, and compaction that
reclaims dead text, merges part-filled blocks and moves old blocks onto the newest
dictionary."""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import zstandard
from meshdex.index.chunking import ChunkingParams, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.errors import StoreCorrupt
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.store import STORE_FORMAT_VERSION, Store, blocks
from meshdex.node.store.blocks import (
    BLOCK_FRAME_BUDGET_BYTES,
    Block,
    Dictionary,
    frame_dictionary_id,
    train_dictionary,
)
from meshdex.node.store.codec import RecordReader, put_bytes, put_varint
from meshdex.node.store.store import stored_format_version

REPO_ROOT = Path(__file__).resolve().parents[1]
V2_COMMIT = "094dffd"  # the last commit that wrote store format 2
CHUNKING = ChunkingParams(max_chars=300, overlap_chars=30)
TOPICS = ["rivers", "compilers", "bread", "orbits", "violins", "glaciers", "ledgers", "moths"]


def prose(i: int) -> str:
    """A document of ~1 KB that shares phrasing with its neighbours, as real corpora do."""
    topic = TOPICS[i % len(TOPICS)]
    return " ".join(
        f"Note {i}.{j} on {topic}: the {topic} of section {i * 31 % 97} relate to item "
        f"{(i * 7919 + j) % 10007}, as chapter {j} explained with care."
        for j in range(8))


def documents(count: int, start: int = 0) -> list[DocumentInput]:
    return [DocumentInput(id=f"doc-{i:05d}", text=prose(i)) for i in range(start, start + count)]


def add(store: Store, docs: list[DocumentInput]) -> None:
    for first in range(0, len(docs), 256):
        store.upsert_documents("c", docs[first : first + 256])


def stored_blocks(store: Store) -> list[tuple[int, bytes]]:
    """(dictionary id, stored value) of every text block."""
    env = store._parts.env
    with env.lmdb.begin() as txn:
        return [(frame_dictionary_id(bytes(key), bytes(value))[0], bytes(value))
                for key, value in txn.cursor(db=env.dbs.blocks)]


def block_text_bytes(store: Store) -> tuple[int, int]:
    """Text bytes the blocks hold, and of those the live ones (from ``block_stats``)."""
    env = store._parts.env
    held = live = 0
    with env.lmdb.begin() as txn:
        for key, value in txn.cursor(db=env.dbs.block_stats):
            reader = RecordReader(bytes(value), what="block stats", key=bytes(key))
            held, live = held + reader.varint(), live + reader.varint()
    return held, live


def dictionary_ids(store: Store) -> list[int]:
    env = store._parts.env
    with env.lmdb.begin() as txn:
        return store._parts.documents.blocks.dictionary_ids(txn, (1).to_bytes(4, "big"))


def contents(store: Store) -> tuple:
    return ([(d.id, d.text) for d in store.iter_documents("c")], list(store.iter_passages("c")))


@pytest.fixture
def small_dictionaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dictionaries from 64 KiB of text on, 8 KiB each: a few hundred documents train one."""
    monkeypatch.setattr(blocks, "DICTIONARY_TRAIN_AT_BYTES", 64 * 1024)
    monkeypatch.setattr(blocks, "DICTIONARY_BYTES", 8 * 1024)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as opened:
        opened.auto_compact_min_free_bytes = 1 << 40  # only explicit compaction here
        opened.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        yield opened


def format_2_value(members: list[tuple[str, bytes]]) -> bytes:
    """A block exactly as format 2 stored it: a bare zstd frame of a varint table."""
    table = bytearray()
    put_varint(table, len(members))
    for doc_id, text in members:
        put_bytes(table, doc_id.encode())
        put_varint(table, len(text))
    payload = bytes(table) + b"".join(text for _, text in members)
    return zstandard.ZstdCompressor(level=9, write_checksum=True).compress(payload)


MEMBERS = [("a", "héllo wörld".encode()), ("", b""), ("c/δ", b"x" * 5000), ("d", b"end")]


@pytest.mark.parametrize("with_dictionary", [False, True], ids=["plain", "dictionary"])
def test_a_block_round_trips_with_and_without_a_dictionary(with_dictionary: bool) -> None:
    trained = train_dictionary([prose(i).encode() for i in range(400)])
    assert trained is not None
    dictionary = Dictionary(id=3, zstd=trained) if with_dictionary else None
    value = Block(members=MEMBERS).encode(dictionary)
    assert frame_dictionary_id(b"k", value)[0] == (3 if with_dictionary else 0)
    assert Block.decode(b"k", value, lambda i: dictionary if i == 3 else None).members == MEMBERS


def test_a_format_2_block_reads_as_it_was_written() -> None:
    value = format_2_value(MEMBERS)
    assert frame_dictionary_id(b"k", value)[0] == 0
    assert Block.decode(b"k", value, lambda i: None).members == MEMBERS


@pytest.mark.parametrize("damage", [
    lambda v: v[:-9],  # truncated frame
    lambda v: v[:2] + bytes([v[2] ^ 0xFF]) + v[3:],  # a flipped byte in the frame
    lambda v: b"\x07" + v[1:],  # unknown tag
    lambda v: Block(members=[]).encode()[:2] + zstandard.ZstdCompressor().compress(
        b"\x05\x00\x00\x00short"),  # a member table longer than the payload
], ids=["truncated", "flipped", "tag", "table"])
def test_a_damaged_block_raises_store_corrupt_naming_its_key(damage) -> None:
    value = damage(Block(members=MEMBERS).encode())
    with pytest.raises(StoreCorrupt, match="b'the-key'"):
        Block.decode(b"the-key", value, lambda i: None)


def test_frames_fit_one_lmdb_page_and_a_dictionary_is_trained(
    store: Store, small_dictionaries: None
) -> None:
    docs = documents(600)
    add(store, docs)
    found = stored_blocks(store)
    assert dictionary_ids(store) == [1]
    assert {dictionary_id for dictionary_id, _ in found[-5:]} == {1}, "new blocks use it"
    assert all(len(value) <= BLOCK_FRAME_BUDGET_BYTES for _, value in found)
    assert sum(len(value) for _, value in found) < 0.35 * sum(len(d.text) for d in docs)
    assert [(d.id, d.text) for d in store.iter_documents("c")] == [(d.id, d.text) for d in docs]


@pytest.mark.parametrize("blocks_per_transaction", [None, 3], ids=["one-go", "3-per-txn"])
def test_a_retrained_dictionary_keeps_old_blocks_readable_until_compaction_moves_them(
    store: Store, small_dictionaries: None, monkeypatch: pytest.MonkeyPatch,
    blocks_per_transaction: int | None,
) -> None:
    if blocks_per_transaction:
        monkeypatch.setattr(blocks, "COMPACT_BLOCKS_PER_TRANSACTION", blocks_per_transaction)
    add(store, documents(20))  # too little text to train on: blocks without a dictionary
    add(store, documents(280, start=20))  # trains dictionary 1
    assert dictionary_ids(store) == [1]
    add(store, documents(1200, start=300))  # four times the text: trains dictionary 2
    assert dictionary_ids(store) == [1, 2]
    before = contents(store)
    on = {dictionary_id for dictionary_id, _ in stored_blocks(store)}
    assert on == {0, 1, 2}, "blocks from before either training are still there"
    store.compact()
    assert {dictionary_id for dictionary_id, _ in stored_blocks(store)} == {2}
    assert dictionary_ids(store) == [2], "no block uses the older dictionary: deleted"
    assert contents(store) == before


@pytest.mark.parametrize("deleted_share", [2, 4], ids=["every-2nd", "every-4th"])
def test_compaction_gives_back_the_text_of_deleted_documents(
    store: Store, deleted_share: int
) -> None:
    docs = documents(2000)
    add(store, docs)
    full = sum(len(value) for _, value in stored_blocks(store))
    store.delete_documents("c", [d.id for d in docs[::deleted_share]])
    before = contents(store)
    store.compact()
    held, live = block_text_bytes(store)
    assert held == live == sum(len(d.text) for i, d in enumerate(docs) if i % deleted_share)
    kept = 1 - 1 / deleted_share
    assert sum(len(value) for _, value in stored_blocks(store)) < full * (kept + 0.1)
    assert contents(store) == before
    add(store, documents(10, start=5000))
    assert store.get_document("c", "doc-05009").text == prose(5009)


def test_a_block_whose_dictionary_is_gone_raises_store_corrupt(
    store: Store, small_dictionaries: None
) -> None:
    add(store, documents(300))
    label = passage_label(store.get_document("c", "doc-00299").passage_keys[0])
    env = store._parts.env
    with env.lmdb.begin(write=True) as txn:
        txn.delete((1).to_bytes(4, "big") + (1).to_bytes(4, "big"), db=env.dbs.dictionaries)
    with pytest.raises(StoreCorrupt, match="its dictionary 1 is not there"):
        store.passage_texts("c", np.array([label], dtype=np.uint64))


WRITE_V2 = """
import sys
from pathlib import Path
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.records import DocumentInput
from meshdex.node.store import Store, STORE_FORMAT_VERSION
from meshdex.node.store import store as store_module
assert store_module.__file__.startswith(sys.argv[2]), store_module.__file__
assert STORE_FORMAT_VERSION == 2
with Store.open(Path(sys.argv[1])) as store:
    store.create_collection("c", embedder=EmbedderSpec(),
                            chunking=ChunkingParams(max_chars=300, overlap_chars=30))
    for start in range(0, 1500, 250):
        store.upsert_documents("c", [DocumentInput(id=f"doc-{i:05d}", text=f"Note {i}: " + (
            f"format two wrote this text about item {i * 7919 % 10007}. " * 10))
            for i in range(start, start + 250)])
    store.delete_documents("c", [f"doc-{i:05d}" for i in range(0, 1500, 3)])
"""


def write_store_at(commit: str, script: str, data_dir: Path, scratch: Path) -> None:
    """Run ``script`` (argv: data directory, package tree) with the meshdex of ``commit``:
    a store written by an older format's own code."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", commit],
                             check=True, capture_output=True).stdout
    tree = scratch / "meshdex"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    subprocess.run([sys.executable, "-c", script, str(data_dir), str(tree)], check=True,
                   env={"PYTHONPATH": str(scratch), "PATH": "/usr/bin:/bin"})


def write_v2_store(data_dir: Path, scratch: Path) -> None:
    """A store written by the format-2 code itself (the repository at ``V2_COMMIT``)."""
    write_store_at(V2_COMMIT, WRITE_V2, data_dir, scratch)


def test_a_format_2_store_opens_upgraded_reads_the_same_and_compacts_onto_new_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    write_v2_store(data_dir, tmp_path / "v2")
    assert stored_format_version(data_dir / STORE_DIR_NAME) == 2
    with Store.open(data_dir, readonly=True) as reader:
        assert reader.format_version == STORE_FORMAT_VERSION
        assert sum(1 for _ in reader.iter_documents("c")) == 1000
    expected = {f"doc-{i:05d}": f"Note {i}: " + (
        f"format two wrote this text about item {i * 7919 % 10007}. " * 10)
        for i in range(1500) if i % 3}
    with caplog.at_level(logging.WARNING), Store.open(data_dir) as store:
        assert store.format_version == STORE_FORMAT_VERSION
        assert {d.id: d.text for d in store.iter_documents("c")} == expected
        assert all(magic == 0 for magic, _ in stored_blocks(store))
        assert all(value.startswith(b"\x28\xb5\x2f\xfd") for _, value in stored_blocks(store))
        passages = list(store.iter_passages("c"))
        labels = np.array([passage_label(key) for key, _ in passages], dtype=np.uint64)
        assert store.passage_texts("c", labels) == [text for _, text in passages]
        store.upsert_documents("c", [DocumentInput(id="new", text="Written by format 3.")])
        store.compact()
        assert not any(value.startswith(b"\x28\xb5\x2f\xfd") for _, value in stored_blocks(store))
        assert all(len(value) <= BLOCK_FRAME_BUDGET_BYTES for _, value in stored_blocks(store))
        assert {d.id: d.text for d in store.iter_documents("c")} == expected | {
            "new": "Written by format 3."}
        assert store.passage_texts("c", labels) == [text for _, text in passages]
    assert any(f"from format 2 to {STORE_FORMAT_VERSION}" in r.message for r in caplog.records)


def test_documents_read_one_at_a_time_decode_each_block_once_and_see_every_write(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    add(store, documents(300))
    decoded: list[int] = []
    real_decode = blocks.Block.of_frame.__func__

    def counting_decode(cls, key, frame, dictionary, *, format_2):
        decoded.append(1)
        return real_decode(cls, key, frame, dictionary, format_2=format_2)

    monkeypatch.setattr(blocks.Block, "of_frame", classmethod(counting_decode))
    for doc in documents(300):
        assert store.get_document("c", doc.id).text == doc.text
    block_count = len(stored_blocks(store))
    assert 0 < len(decoded) <= block_count, "a shared block was decoded once per document"
    # A write that rewrites a block: the next read decodes the new bytes, not the kept ones.
    store.upsert_documents("c", [DocumentInput(id="doc-00299", text="rewritten text")])
    assert store.get_document("c", "doc-00299").text == "rewritten text"
    assert store.get_document("c", "doc-00000").text == prose(0)
