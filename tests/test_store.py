"""The LMDB document store: round trip, restart, no-op re-adds, replaced passages, tombstones,
one writer at a time, readers alongside, and acknowledged writes surviving kill -9."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from meshdex.index.chunking import ChunkingParams, chunk_text, passage_key, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition, NotFound
from meshdex.node.errors import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    StoreLocked,
)
from meshdex.node.records import DocumentInput, Outcome
from meshdex.node.store import Store

SMALL_CHUNKS = ChunkingParams(max_chars=60, overlap_chars=10)
LONG_TEXT = (
    "The store keeps passages by content hash. Equal passages are stored once.\n\n"
    "Deleting a document leaves a tombstone, so sync can tell peers about it. "
    "Changed text replaces the passages of a document."
)


def random_texts(count: int) -> list[str]:
    """Texts that compress only about 2x (hex digests), ~13 KB each."""
    return [
        " ".join(hashlib.sha256(f"{i}-{j}".encode()).hexdigest() for j in range(200))
        for i in range(count)
    ]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as opened:
        opened.create_collection("notes", embedder=EmbedderSpec(), chunking=SMALL_CHUNKS)
        yield opened


def doc(doc_id: str, text: str = LONG_TEXT, **kwargs) -> DocumentInput:
    return DocumentInput(id=doc_id, text=text, **kwargs)


def test_round_trip_survives_restart(tmp_path: Path) -> None:
    spec = EmbedderSpec(precision="bf16")
    with Store.open(tmp_path) as store:
        store.create_collection("notes", embedder=spec, chunking=SMALL_CHUNKS)
        store.upsert_documents(
            "notes", [doc("a", metadata={"lang": "en", "year": 2024}, source="/x/a.txt")]
        )
        device = store.device_id
        last_hlc = store.max_hlc
    with Store.open(tmp_path) as store:
        assert store.device_id == device
        info = store.get_collection("notes")
        assert (info.embedder, info.chunking) == (spec, SMALL_CHUNKS)
        assert info.document_count == 1
        assert info.passage_count == len(set(chunk_text(LONG_TEXT, SMALL_CHUNKS)))
        got = store.get_document("notes", "a")
        assert (got.text, got.metadata, got.source) == (
            LONG_TEXT,
            {"lang": "en", "year": 2024},
            "/x/a.txt",
        )
        assert got.passage_keys == tuple(
            passage_key(t) for t in chunk_text(LONG_TEXT, SMALL_CHUNKS)
        )
        store.upsert_documents("notes", [doc("b", "later")])
        assert store.get_document("notes", "b").hlc > last_hlc


def test_readd_unchanged_is_a_no_op(store: Store) -> None:
    assert store.upsert_documents("notes", [doc("a")]) == [Outcome.ADDED]
    seq, hlc = store.last_seq, store.max_hlc
    assert store.upsert_documents("notes", [doc("a")]) == [Outcome.UNCHANGED]
    assert (store.last_seq, store.max_hlc) == (seq, hlc)
    assert store.get_document("notes", "a").hlc == hlc


def test_changed_text_replaces_passages(store: Store) -> None:
    store.upsert_documents("notes", [doc("a")])
    old_keys = store.get_document("notes", "a").passage_keys
    assert store.upsert_documents("notes", [doc("a", "Entirely new words.")]) == [Outcome.UPDATED]
    passages = list(store.iter_passages("notes"))
    assert passages == [(passage_key("Entirely new words."), "Entirely new words.")]
    assert store.get_collection("notes").passage_count == 1
    old_labels = np.array([passage_label(k) for k in old_keys], dtype=np.uint64)
    with pytest.raises(NotFound, match="not in the store"):
        store.passage_texts("notes", old_labels)


def test_metadata_only_change_keeps_passages(store: Store) -> None:
    store.upsert_documents("notes", [doc("a")])
    before = store.get_document("notes", "a")
    assert store.upsert_documents("notes", [doc("a", metadata={"v": 2})]) == [Outcome.UPDATED]
    after = store.get_document("notes", "a")
    assert after.passage_keys == before.passage_keys and after.metadata == {"v": 2}
    assert after.hlc > before.hlc


def test_shared_passages_are_stored_once_and_mapped_to_each_document(store: Store) -> None:
    store.upsert_documents("notes", [doc("a", "same words"), doc("b", "same words")])
    key = passage_key("same words")
    assert store.passage_documents("notes", key) == ["a", "b"]
    assert store.get_collection("notes").passage_count == 1
    store.delete_documents("notes", ["a"])
    assert store.passage_documents("notes", key) == ["b"]
    assert store.passage_texts("notes", np.array([passage_label(key)], dtype=np.uint64)) == [
        "same words"
    ]


def test_delete_leaves_a_tombstone_and_readd_revives(store: Store) -> None:
    store.upsert_documents("notes", [doc("a"), doc("b", "keep me")])
    assert store.delete_documents("notes", ["a", "missing"]) == (["a"], ["missing"])
    with pytest.raises(DocumentNotFound, match="'a'"):
        store.get_document("notes", "a")
    info = store.get_collection("notes")
    assert (info.document_count, info.tombstone_count, info.passage_count) == (1, 1, 1)
    assert store.delete_documents("notes", ["a"]) == ([], ["a"])
    assert store.upsert_documents("notes", [doc("a", "back")]) == [Outcome.ADDED]
    info = store.get_collection("notes")
    assert (info.document_count, info.tombstone_count) == (2, 0)


def test_passages_iterate_sorted_by_key_and_resolve_by_label(store: Store) -> None:
    texts = [f"Passage number {i} has its own words." for i in range(30)]
    store.upsert_documents("notes", [doc(f"d{i}", t) for i, t in enumerate(texts)])
    passages = list(store.iter_passages("notes"))
    keys = [key for key, _ in passages]
    assert keys == sorted(keys) and len(keys) == 30
    assert dict(passages) == {passage_key(t): t for t in texts}
    labels = np.array([passage_label(k) for k in keys[::-1]], dtype=np.uint64)
    assert store.passage_texts("notes", labels) == [text for _, text in passages[::-1]]


def test_iter_documents_lists_live_documents_by_id(store: Store) -> None:
    store.upsert_documents("notes", [doc("b", "two"), doc("a", "one"), doc("c", "three")])
    store.delete_documents("notes", ["c"])
    assert [d.id for d in store.iter_documents("notes")] == ["a", "b"]


def test_collections_create_list_drop(store: Store) -> None:
    with pytest.raises(CollectionExists, match="notes"):
        store.create_collection("notes", embedder=EmbedderSpec(), chunking=SMALL_CHUNKS)
    store.create_collection("nota", embedder=EmbedderSpec(), chunking=ChunkingParams())
    store.upsert_documents("notes", [doc("a", "shared")])
    store.upsert_documents("nota", [doc("a", "shared")])
    assert [c.name for c in store.list_collections()] == ["nota", "notes"]
    store.drop_collection("nota")
    assert [c.name for c in store.list_collections()] == ["notes"]
    assert list(store.iter_passages("notes")) == [(passage_key("shared"), "shared")]
    for call in (
        lambda: store.get_collection("nota"),
        lambda: store.upsert_documents("nota", [doc("x")]),
        lambda: list(store.iter_passages("nota")),
    ):
        with pytest.raises(CollectionNotFound, match="nota"):
            call()


def test_store_grows_its_map_when_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("meshdex.node.store.env.INITIAL_MAP_SIZE_BYTES", 1024 * 1024)
    with Store.open(tmp_path) as store:
        store.create_collection("big", embedder=EmbedderSpec(), chunking=ChunkingParams())
        texts = random_texts(200)
        store.upsert_documents("big", [doc(str(i), t) for i, t in enumerate(texts)])
        assert store.get_collection("big").document_count == 200
        assert store._parts.env.lmdb.info()["map_size"] > 1024 * 1024
    with Store.open(tmp_path, readonly=True) as reader:
        assert reader.get_document("big", "199").text == texts[199]


READER = """
import sys
from pathlib import Path
from meshdex.index.errors import FailedPrecondition
from meshdex.node.records import DocumentInput
from meshdex.node.store import Store

with Store.open(Path(sys.argv[1]), readonly=True) as reader:
    print(reader.get_document("notes", "a").text[:9])
    try:
        reader.upsert_documents("notes", [DocumentInput(id="b", text="no")])
    except FailedPrecondition as error:
        print(error)
"""


def test_readonly_store_reads_alongside_writer_and_refuses_writes(store: Store) -> None:
    store.upsert_documents("notes", [doc("a")])
    out = subprocess.run(
        [sys.executable, "-c", READER, str(store.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.splitlines() == [
        "The store",
        f"the store in {store.data_dir} is open read-only (path: {store.data_dir})",
    ], out.stderr


def test_opening_the_same_store_twice_in_one_process_is_refused(store: Store) -> None:
    with pytest.raises(FailedPrecondition, match="already open"):
        Store.open(store.data_dir, readonly=True)


def test_readonly_open_of_missing_store_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no meshdex store") as caught:
        Store.open(tmp_path / "nothing", readonly=True)
    assert "meshdex add" in str(caught.value)


def test_second_writer_in_another_process_is_refused(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from meshdex.node.errors import StoreLocked
        from meshdex.node.store import Store
        try:
            Store.open(Path({str(tmp_path)!r}))
        except StoreLocked as error:
            print("LOCKED", error)
        """
    )
    with Store.open(tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.startswith("LOCKED"), out.stderr
        assert f"pid {os.getpid()}" in out.stdout and str(tmp_path) in out.stdout
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "LOCKED" not in out.stdout, "lock released on close"


def test_second_writer_in_the_same_process_is_refused(store: Store) -> None:
    with pytest.raises(StoreLocked, match="another process"):
        Store.open(store.data_dir)


KILL_WRITER = """
import sys
from pathlib import Path
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

per_write = int(sys.argv[2])
with Node.open(Path(sys.argv[1])) as node:
    for i in range(100000):
        report = node.upsert_documents(
            "default",
            [DocumentInput(id=f"doc-{i}-{j}", text=f"text number {i} {j} " * 20)
             for j in range(per_write)],
            create_missing=True,
        )
        print(" ".join(item.id for item in report.items), flush=True)
"""


def test_closing_waits_for_a_write_on_another_thread_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node stopping while a sync batch or an upsert is being written: the write finishes
    and is kept, and the store closes after it instead of invalidating it under the writer
    (which left LMDB waiting for that thread's transaction without limit)."""
    store = Store.open(tmp_path)
    store.create_collection("notes", embedder=EmbedderSpec(), chunking=SMALL_CHUNKS)
    in_write, go_on = threading.Event(), threading.Event()
    session = store._session

    def slow_session(*args):
        in_write.set()
        assert go_on.wait(10)
        return session(*args)

    monkeypatch.setattr(store, "_session", slow_session)
    outcomes: list[object] = []
    writer = threading.Thread(target=lambda: outcomes.append(
        store.upsert_documents("notes", [doc("kept")])))
    writer.start()
    assert in_write.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "the store closed under a write in progress"
    go_on.set()
    writer.join(10)
    closer.join(10)
    assert not closer.is_alive() and outcomes == [[Outcome.ADDED]]
    with pytest.raises(FailedPrecondition, match="is closed"):
        store.upsert_documents("notes", [doc("late")])
    with pytest.raises(FailedPrecondition, match="is closed"):
        store.get_document("notes", "kept")
    with Store.open(tmp_path) as reopened:
        assert reopened.get_document("notes", "kept").text == LONG_TEXT


@pytest.mark.parametrize(("documents_per_write", "kill_after_writes"), [
    (1, 3),  # the first text block is still being filled
    (1, 60),  # several blocks, the newest rewritten by every write
    (64, 12),  # batches of documents compressed together
])
def test_acknowledged_writes_survive_kill_9(
    tmp_path: Path, documents_per_write: int, kill_after_writes: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILL_WRITER, str(tmp_path), str(documents_per_write)],
        stdout=subprocess.PIPE, text=True,
    )
    acknowledged = []
    assert process.stdout is not None
    for line in process.stdout:
        acknowledged.extend(line.split())
        if len(acknowledged) >= kill_after_writes * documents_per_write:
            break
    process.send_signal(signal.SIGKILL)
    for line in process.stdout:  # printed before the kill
        acknowledged.extend(line.split())
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    with Store.open(tmp_path) as store:
        for doc_id in acknowledged:
            assert store.get_document("default", doc_id).text.startswith("text number")
        assert store.get_collection("default").document_count >= len(acknowledged)


COUNTING_READER = """
import sys
from pathlib import Path
from meshdex.node.store import Store

with Store.open(Path(sys.argv[1]), readonly=True) as reader:
    for _ in sys.stdin:
        print(reader.get_collection("big").document_count, flush=True)
"""


def test_a_reader_process_keeps_reading_after_the_writer_grows_the_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("meshdex.node.store.env.INITIAL_MAP_SIZE_BYTES", 1024 * 1024)
    with Store.open(tmp_path) as store:
        store.create_collection("big", embedder=EmbedderSpec(), chunking=ChunkingParams())
        store.upsert_documents("big", [doc("first", "one")])
        reader = subprocess.Popen(
            [sys.executable, "-c", COUNTING_READER, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdin is not None and reader.stdout is not None
        try:
            reader.stdin.write("count\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "1"
            store.upsert_documents("big", [doc(str(i), t) for i, t in enumerate(random_texts(200))])
            assert store._parts.env.lmdb.info()["map_size"] > 1024 * 1024
            reader.stdin.write("count\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "201"
        finally:
            reader.stdin.close()
            reader.wait(timeout=30)
        assert reader.returncode == 0
