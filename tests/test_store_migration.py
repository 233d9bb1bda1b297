"""Version-1 stores (written by the real version-1 code, loaded from git history) migrate in
place on the first open, read-only or not: same documents, log, watermarks and search answers;
crash-safe under kill -9; a store newer than the program is refused clearly."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from meshdex.bench.legacy_store import V1SearchAdapter, load_v1_store
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition
from meshdex.node.errors import StoreCorrupt, StoreTooNew
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.indexing import IndexManager
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import ChangeOp, DocumentInput, RemoteChange
from meshdex.node.store import STORE_FORMAT_VERSION, Store, migration
from meshdex.node.store.store import stored_format_version
from meshdex.node.store.swap import BUILDING_DIR_NAME

SAMPLE = Path(__file__).resolve().parents[1] / "node" / "sample" / "python-tutorial"
CHUNKING = ChunkingParams(max_chars=400, overlap_chars=40)
QUERIES = ["how do I define a class?", "reading and writing files", "list comprehensions",
           "handling exceptions with try"]


def sample_documents() -> list[DocumentInput]:
    return [
        DocumentInput(id=path.name, text=path.read_text(encoding="utf-8"),
                      metadata={"kind": "tutorial", "chars": len(path.name)},
                      source=str(path))
        for path in sorted(SAMPLE.glob("*.rst"))
    ]


def write_v1_store(data_dir: Path) -> dict:
    """A version-1 store with live documents, an edit, a delete and a merged remote write."""
    v1 = load_v1_store()
    with v1.Store.open(data_dir) as store:
        store.create_collection("tut", embedder=EmbedderSpec(), chunking=CHUNKING)
        store.create_collection("empty", embedder=EmbedderSpec(precision="bf16"),
                                chunking=ChunkingParams())
        docs = sample_documents()
        store.upsert_documents("tut", docs)
        store.upsert_documents("tut", [DocumentInput(id=docs[0].id, text="Edited once.")])
        store.delete_documents("tut", [docs[1].id])
        store.apply_remote_changes("tut", [RemoteChange(
            doc_id="remote", op=ChangeOp.UPSERT, origin_device="peer", origin_seq=7,
            hlc=HLCTimestamp(physical_ms=1, logical=0, device_id="peer"), text="From a peer.")])
        return {
            "device_id": store.device_id,
            "last_seq": store.last_seq,
            "max_hlc": store.max_hlc,
            "state": store.state("tut"),
            "collections": store.list_collections(),
            "documents": [d.to_dict() | {"keys": d.passage_keys}
                          for d in store.iter_documents("tut")],
            "passages": list(store.iter_passages("tut")),
            "latest": {c.doc_id: (c.seq, c.op, c.hlc, c.content_hash, c.origin_device,
                                  c.origin_seq)
                       for c in store.changes_since(0)},
        }


def test_a_version_1_store_migrates_with_everything_it_held(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = write_v1_store(tmp_path)
    assert stored_format_version(tmp_path / STORE_DIR_NAME) == 1
    with caplog.at_level(logging.WARNING), Store.open(tmp_path) as store:
        assert store.format_version == STORE_FORMAT_VERSION
        assert (store.device_id, store.last_seq, store.max_hlc) == (
            before["device_id"], before["last_seq"], before["max_hlc"])
        assert store.state("tut") == before["state"]
        assert store.list_collections() == before["collections"]
        assert [d.to_dict() | {"keys": d.passage_keys}
                for d in store.iter_documents("tut")] == before["documents"]
        assert list(store.iter_passages("tut")) == before["passages"]
        changes = list(store.changes_since(0))
        assert {c.doc_id: (c.seq, c.op, c.hlc, c.content_hash, c.origin_device, c.origin_seq)
                for c in changes} == before["latest"]
        assert [c.seq for c in changes] == sorted(c.seq for c in changes)
        store.upsert_documents("tut", [DocumentInput(id="new", text="Written after.")])
        assert store.last_seq == before["last_seq"] + 1
    assert any("migrated the store" in r.message
               and f"from format 1 to {STORE_FORMAT_VERSION}" in r.message
               for r in caplog.records)
    assert not list(tmp_path.glob("store-*")), "no leftovers of the migration"


def _answers(manager: IndexManager) -> list[list[tuple[str, str, float]]]:
    return [[(hit.document_id, hit.passage, round(hit.score, 5))
             for hit in manager.search("tut", query, top_k=4).hits] for query in QUERIES]


def test_a_migrated_store_answers_the_same_searches_with_its_index(
    tmp_path: Path, fake_embedder
) -> None:
    write_v1_store(tmp_path)
    v1 = load_v1_store()
    with v1.Store.open(tmp_path) as old:
        manager = IndexManager(V1SearchAdapter(old), embedder_factory=lambda info: fake_embedder)
        manager.build("tut")
        before = _answers(manager)
        manager.close()
    assert any(before)
    with Store.open(tmp_path) as store:
        manager = IndexManager(store, embedder_factory=lambda info: fake_embedder)
        assert _answers(manager) == before
        assert not manager.summaries()[0].stale, "the index still matches the migrated store"
        manager.close()


MIGRATE = """
import sys
from pathlib import Path
from meshdex.node.store import Store
with Store.open(Path(sys.argv[1])) as store:
    print("open", store.get_collection("tut").document_count, flush=True)
"""


@pytest.fixture(scope="module")
def big_v1_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A version-1 store large enough (~4 MB of text) that migrating it takes a while."""
    data_dir = tmp_path_factory.mktemp("big-v1")
    before = write_v1_store(data_dir)
    v1 = load_v1_store()
    with v1.Store.open(data_dir) as store:
        for copy in range(14):
            store.upsert_documents("tut", [
                DocumentInput(id=f"{copy}/{doc.id}", text=f"Copy {copy}. {doc.text}",
                              metadata=doc.metadata)
                for doc in sample_documents()])
        before["documents"] = [d.to_dict() for d in store.iter_documents("tut")]
        before["last_seq"], before["state"] = store.last_seq, store.state("tut")
    return data_dir, before


@pytest.mark.parametrize("kill_after_s", [0.0, 0.4, 1.2])
def test_kill_9_during_migration_leaves_a_whole_store(
    tmp_path: Path, big_v1_store: tuple[Path, dict], kill_after_s: float
) -> None:
    source, before = big_v1_store
    data_dir = tmp_path / "data"
    shutil.copytree(source, data_dir)
    process = subprocess.Popen([sys.executable, "-c", MIGRATE, str(data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while not (data_dir / BUILDING_DIR_NAME).exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(kill_after_s)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with Store.open(data_dir) as store:
        assert [d.to_dict() for d in store.iter_documents("tut")] == before["documents"]
        assert store.last_seq == before["last_seq"]
        assert store.state("tut") == before["state"]
    assert not list(data_dir.glob("store-*"))


def test_a_store_newer_than_the_program_is_refused_clearly(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        env = store._parts.env
        env.write(lambda txn: txn.put(
            b"format_version", (STORE_FORMAT_VERSION + 1).to_bytes(8, "big"), db=env.dbs.meta))
    for readonly in (False, True):
        newer = STORE_FORMAT_VERSION + 1
        with pytest.raises(StoreTooNew, match=f"format version {newer}; this meshdex reads up "
                                             f"to {STORE_FORMAT_VERSION}"):
            Store.open(tmp_path, readonly=readonly)


def test_a_read_only_open_of_a_version_1_store_migrates_it_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first command after an upgrade is often a search, which opens read-only."""
    before = write_v1_store(tmp_path)
    with caplog.at_level(logging.WARNING), Store.open(tmp_path, readonly=True) as store:
        assert store.readonly
        assert store.format_version == STORE_FORMAT_VERSION
        assert list(store.iter_passages("tut")) == before["passages"]
        assert store.state("tut") == before["state"]
    assert any(f"from format 1 to {STORE_FORMAT_VERSION}" in r.message for r in caplog.records)
    with Store.open(tmp_path):
        pass  # the migration left the writer lock free


HOLD_LOCK = """
import sys, time
from pathlib import Path
from meshdex.node.lock import WriterLock
lock = WriterLock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_read_only_open_while_another_process_holds_an_old_store_says_to_wait(
    tmp_path: Path
) -> None:
    write_v1_store(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FailedPrecondition, match="another process is migrating it") as caught:
            Store.open(tmp_path, readonly=True)
        assert "wait for it to finish" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
    assert stored_format_version(tmp_path / STORE_DIR_NAME) == 1, "the store was left as it was"


def test_a_read_only_open_of_an_old_store_the_user_cannot_write_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root ignores file modes, so the refusal of the lock file is the double here."""
    write_v1_store(tmp_path)

    def refused(data_dir: Path) -> None:
        raise PermissionError(13, "Permission denied", str(data_dir / "writer.lock"))

    monkeypatch.setattr("meshdex.node.store.store.WriterLock", refused)
    with pytest.raises(FailedPrecondition, match="needs write access") as caught:
        Store.open(tmp_path, readonly=True)
    assert "meshdex compact" in str(caught.value)
    assert stored_format_version(tmp_path / STORE_DIR_NAME) == 1


def test_a_migration_that_does_not_verify_leaves_the_version_1_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = write_v1_store(tmp_path)
    real_write_batch = migration._write_batch

    def lose_one(parts, documents, txn, record, batch):  # a bug that loses a document
        return real_write_batch(parts, documents, txn, record, batch[:-1])

    monkeypatch.setattr(migration, "_write_batch", lose_one)
    with pytest.raises(StoreCorrupt, match="did not reproduce it"):
        Store.open(tmp_path)
    assert stored_format_version(tmp_path / STORE_DIR_NAME) == 1
    assert not list(tmp_path.glob("store-*"))
    with load_v1_store().Store.open(tmp_path) as old:
        assert [d.to_dict() | {"keys": d.passage_keys}
                for d in old.iter_documents("tut")] == before["documents"]
