"""Compaction: ``Store.compact`` / ``meshdex compact`` give free pages back, swapped in
atomically; readers and iterators already running are unaffected; writes wait and are kept;
kill -9 at any point leaves a whole store; the store compacts itself past a threshold."""

from __future__ import annotations

import json
import random
import re
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from grpc_support import started_node
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition, PermissionDenied
from meshdex.node.cli.main import EXIT_CODES, cli
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import ChangeOp, DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store
from meshdex.node.store.swap import (
    BUILDING_DIR_NAME,
    READY_DIR_NAME,
    RETIRED_DIR_NAME,
    recover,
)
from meshdex.sync.errors import TrustStoreCorrupt
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer

CHUNKING = ChunkingParams(max_chars=300, overlap_chars=30)


def texts(count: int, *, tag: str = "") -> list[DocumentInput]:
    return [DocumentInput(id=f"doc-{i:05d}", text=(
        f"{tag}Document {i} talks about topic {i % 37} and item {i * 7919 % 10007}. " * 12))
        for i in range(count)]


def data_file(data_dir: Path) -> Path:
    return data_dir / STORE_DIR_NAME / "data.mdb"


def snapshot(store: Store) -> tuple:
    return (
        [d.to_dict() for d in store.iter_documents("c")],
        list(store.iter_passages("c")),
        [c.seq for c in store.changes_since(0)],
        store.state("c"),
        store.get_collection("c").document_count,
    )


@pytest.fixture
def filled(tmp_path: Path):
    with Store.open(tmp_path) as store:
        store.auto_compact_min_free_bytes = 1 << 40  # only explicit compaction here
        store.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        docs = texts(3000)
        for start in range(0, len(docs), 256):
            store.upsert_documents("c", docs[start : start + 256])
        yield store


def test_compact_after_deleting_half_shrinks_the_file_and_keeps_everything(filled: Store) -> None:
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(0, 3000, 2)])
    before = snapshot(filled)
    size_before = data_file(filled.data_dir).stat().st_size
    assert filled.free_bytes() > 0
    report = filled.compact()
    assert report.before_bytes == size_before
    assert report.after_bytes == data_file(filled.data_dir).stat().st_size
    assert report.after_bytes < 0.75 * size_before
    assert filled.free_bytes() < 64 * 1024
    assert snapshot(filled) == before
    filled.upsert_documents("c", [DocumentInput(id="after", text="written after compaction")])
    assert filled.get_document("c", "after").text == "written after compaction"
    assert not list(filled.data_dir.glob("store-*"))


def test_an_iterator_started_before_compaction_finishes_on_its_snapshot(filled: Store) -> None:
    expected = [d.id for d in filled.iter_documents("c")]
    iterator = filled.iter_documents("c")
    first = next(iterator)
    filled.delete_documents("c", expected[:100])
    filled.compact()
    assert [first.id, *(d.id for d in iterator)] == expected
    assert filled.get_collection("c").document_count == len(expected) - 100


READER = """
import sys
from pathlib import Path
from meshdex.node.store import Store
with Store.open(Path(sys.argv[1]), readonly=True) as reader:
    for _ in sys.stdin:
        print(reader.get_document("c", "doc-00001").text[:12],
              reader.get_collection("c").document_count, flush=True)
"""


def test_a_reader_process_keeps_reading_through_a_compaction(filled: Store) -> None:
    reader = subprocess.Popen([sys.executable, "-c", READER, str(filled.data_dir)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdin is not None and reader.stdout is not None
    try:
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["Document", "1", "t", "3000"]
        filled.compact()
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert reader.stdout.readline().split() == ["Document", "1", "t", "3000"]
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0


def test_writes_during_a_compaction_wait_and_are_kept(filled: Store) -> None:
    written: list[str] = []

    def writer() -> None:
        for i in range(40):
            doc_id = f"late-{i}"
            filled.upsert_documents("c", [DocumentInput(id=doc_id, text=f"late text {i}")])
            written.append(doc_id)

    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(3):
        filled.compact()
    thread.join(timeout=120)
    assert len(written) == 40
    assert all(filled.get_document("c", doc_id) for doc_id in written)


def test_a_node_compacts_after_a_request_that_left_enough_free_pages(tmp_path: Path) -> None:
    with Node.open(tmp_path) as node:
        node.store.auto_compact_min_free_bytes = 64 * 1024  # the store here is under 1 MiB
        node.upsert_documents("c", texts(3000), create_missing=True)
        assert node.store.free_bytes() < 0.1 * node.store.store_bytes(), "compacted after add"
        size_before = data_file(tmp_path).stat().st_size
        node.delete_documents("c", [f"doc-{i:05d}" for i in range(2700)])
        assert data_file(tmp_path).stat().st_size < 0.8 * size_before
        assert node.store.free_bytes() < 0.1 * node.store.store_bytes(), "compacted after rm"
        info = node.get_collection("c")
        # paired with no one: no other device has to learn of the deletes
        assert (info.document_count, info.tombstone_count) == (300, 0)
        assert len(list(node.store.changes_since(0, collection="c"))) == 300
        node.store.auto_compact_min_free_bytes = 1 << 40
        node.delete_documents("c", [f"doc-{i:05d}" for i in range(2700, 2900)])
        assert node.store.free_bytes() > 0, "below the threshold nothing is compacted"


def pair_a_laptop_sharing_c(data_dir: Path, identity_dir: Path) -> None:
    """Record a paired device sharing collection "c" that has not synced yet."""
    peer = load_identity(identity_dir)
    TrustStore(data_dir).add(make_peer(cert_pem=peer.cert_pem.decode(), name="laptop",
                                       addresses=[], collections=["c"], mode="read-write"))


def test_the_pairings_are_asked_for_only_when_a_compaction_is_due(filled: Store) -> None:
    asked: list[int] = []

    def pairings() -> dict[str, list[str]]:
        asked.append(1)
        return {}

    assert filled.compact_if_worthwhile(pairings=pairings) is None
    assert asked == []  # a write request that leaves nothing to compact reads no peers file
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(2000)])
    filled.auto_compact_min_free_bytes = 64 * 1024
    report = filled.compact_if_worthwhile(pairings=pairings)
    assert asked == [1] and report is not None and report.tombstones_dropped == 2000


def test_a_nodes_own_compaction_keeps_tombstones_a_paired_peer_sharing_them_has_not_seen(
    tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    pair_a_laptop_sharing_c(data_dir, tmp_path / "peer")
    with Node.open(data_dir) as node:
        node.store.auto_compact_min_free_bytes = 64 * 1024
        node.upsert_documents("c", texts(3000), create_missing=True)
        node.upsert_documents("other", texts(3000, tag="other "), create_missing=True)
        node.delete_documents("c", [f"doc-{i:05d}" for i in range(2700)])
        assert node.store.free_bytes() < 0.1 * node.store.store_bytes(), "compacted after rm"
        assert node.get_collection("c").tombstone_count == 2700
        deletes = [c for c in node.store.changes_since(0, collection="c")
                   if c.op is ChangeOp.DELETE]
        assert len(deletes) == 2700  # still in the log for the laptop's first sync
        node.delete_documents("other", [f"doc-{i:05d}" for i in range(2700)])
        assert node.get_collection("other").tombstone_count == 0  # the laptop does not share it


def test_an_unreadable_trust_store_keeps_tombstones_and_fails_no_write(tmp_path: Path) -> None:
    with Node.open(tmp_path) as node:
        node.store.auto_compact_min_free_bytes = 64 * 1024
        node.upsert_documents("c", texts(3000), create_missing=True)
        node.trust.path.parent.mkdir(parents=True, exist_ok=True)
        node.trust.path.write_text("{not json", encoding="utf-8")
        report = node.delete_documents("c", [f"doc-{i:05d}" for i in range(2700)])
        assert len(report.deleted) == 2700
        assert node.store.free_bytes() < 0.1 * node.store.store_bytes(), "compacted after rm"
        assert node.get_collection("c").tombstone_count == 2700
        with pytest.raises(TrustStoreCorrupt):
            node.compact()  # asked for: says why instead of guessing the pairings
        assert node.get_collection("c").tombstone_count == 2700


def varied_texts(count: int, *, seed: int) -> list[DocumentInput]:
    """Documents of seeded random words: they compress like prose, not like repeats."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9)))
                  for _ in range(3000)]
    return [DocumentInput(id=f"v{seed}-{i:05d}", text=" ".join(rng.choices(vocabulary, k=90)))
            for i in range(count)]


def test_an_add_that_grows_the_store_by_half_is_followed_by_a_dense_rewrite(
        tmp_path: Path) -> None:
    docs = varied_texts(5000, seed=1)
    with Store.open(tmp_path / "batches") as store:  # the node's batches, no compaction
        store.create_collection("c", embedder=EmbedderSpec(), chunking=ChunkingParams())
        for start in range(0, len(docs), 256):
            store.upsert_documents("c", docs[start : start + 256])
        uncompacted = store.store_bytes()
    with Node.open(tmp_path / "node") as node:
        node.upsert_documents("c", docs, create_missing=True)
        compacted = data_file(tmp_path / "node")
        assert compacted.stat().st_size < 0.9 * uncompacted
        assert node.store.free_bytes() == 0
        inode = compacted.stat().st_ino
        node.upsert_documents("c", varied_texts(300, seed=2))
        assert compacted.stat().st_ino == inode, "a small add must not rewrite the store"
        assert node.get_collection("c").document_count == 5300


def test_a_read_only_store_does_not_compact(filled: Store, tmp_path: Path) -> None:
    with Store.open(tmp_path / "other") as other:
        other.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
    with Store.open(tmp_path / "other", readonly=True) as reader, pytest.raises(
            FailedPrecondition, match="read-only"):
        reader.compact()


COMPACT_FOREVER = """
import sys
from pathlib import Path
from meshdex.node.store import Store
with Store.open(Path(sys.argv[1])) as store:
    print("open", flush=True)
    while True:
        store.compact()
"""


@pytest.mark.parametrize("kill_after_s", [0.05, 0.3, 0.7, 1.3])
def test_kill_9_during_compaction_leaves_a_whole_store(
    filled: Store, kill_after_s: float
) -> None:
    data_dir = filled.data_dir
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(0, 3000, 3)])
    before = snapshot(filled)
    filled.close()
    process = subprocess.Popen([sys.executable, "-c", COMPACT_FOREVER, str(data_dir)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "open\n"
    time.sleep(kill_after_s)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with Store.open(data_dir) as store:
        assert snapshot(store) == before
    assert not list(data_dir.glob("store-*"))


KILLED_INSIDE_COMPACTION = """
import os
import signal
import sys
from pathlib import Path
from meshdex.node.store import Store, blocks, documents, env

target, calls = sys.argv[2], int(sys.argv[3])
owner = {"put": blocks.TextBlocks, "compact_texts": documents.Documents,
         "copy_dense": env.Environment}[target]
name = {"put": "_put"}.get(target, target)
original = getattr(owner, name)
seen = 0

def killing(*args, **kwargs):
    global seen
    seen += 1
    if target == "compact_texts":  # after the rewrite, before its transaction commits
        original(*args, **kwargs)
    if seen >= calls:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)

with Store.open(Path(sys.argv[1])) as store:
    setattr(owner, name, killing)
    store.compact()
"""


@pytest.mark.parametrize(("target", "calls"), [
    ("put", 1),  # the first rewritten text block
    ("put", 5),  # halfway through rewriting the blocks (the test store has ~10)
    ("compact_texts", 1),  # every block rewritten, the transaction not yet committed
    ("copy_dense", 1),  # blocks rewritten and committed, the dense copy not begun
], ids=lambda value: str(value))
def test_kill_9_while_compaction_rewrites_text_blocks_loses_nothing(
    filled: Store, target: str, calls: int
) -> None:
    data_dir = filled.data_dir
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(0, 3000, 3)])
    before = snapshot(filled)
    filled.close()
    process = subprocess.run([sys.executable, "-c", KILLED_INSIDE_COMPACTION, str(data_dir),
                              target, str(calls)], timeout=120)
    assert process.returncode == -signal.SIGKILL
    with Store.open(data_dir) as store:
        assert snapshot(store) == before
        store.compact()
        assert snapshot(store) == before
    assert not list(data_dir.glob("store-*"))


@pytest.mark.parametrize("crashed_with", [
    (BUILDING_DIR_NAME,),  # killed while copying: the copy is discarded
    (READY_DIR_NAME,),  # killed after the copy was complete: it is swapped in
    (RETIRED_DIR_NAME, READY_DIR_NAME),  # killed between the two renames
    (RETIRED_DIR_NAME, STORE_DIR_NAME),  # killed before the old store was deleted
], ids=lambda dirs: "+".join(dirs))
def test_recovery_finishes_or_undoes_every_interrupted_swap(
    tmp_path: Path, crashed_with: tuple[str, ...]
) -> None:
    """The states kill -9 can leave between swap steps, made exactly, and what opening does."""
    with Store.open(tmp_path / "old") as old:
        old.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        old.upsert_documents("c", [DocumentInput(id="x", text="the old store")])
    with Store.open(tmp_path / "new") as new:
        new.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        new.upsert_documents("c", [DocumentInput(id="x", text="the new store")])
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    complete_copy = READY_DIR_NAME in crashed_with or crashed_with[-1] == STORE_DIR_NAME
    wanted = "the new store" if complete_copy else "the old store"
    if STORE_DIR_NAME not in crashed_with and RETIRED_DIR_NAME not in crashed_with:
        (tmp_path / "old" / STORE_DIR_NAME).rename(data_dir / STORE_DIR_NAME)
    for name in crashed_with:
        source = "old" if name == RETIRED_DIR_NAME else "new"
        if name == BUILDING_DIR_NAME:
            source = "new"
        (tmp_path / source / STORE_DIR_NAME).rename(data_dir / name)
    recover(data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == [STORE_DIR_NAME]
    with Store.open(data_dir) as store:
        assert store.get_document("c", "x").text == wanted


def test_cli_compact_reports_what_it_did(filled: Store) -> None:
    data_dir = filled.data_dir
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(1500)])
    filled.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "compact"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("compacted the store: ") and " MiB -> " in result.output
    # paired with no one: no other device holds these documents or has to learn of the deletes
    assert "dropped 1500 tombstones of deleted documents" in result.output
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "compact", "--json"])
    report = json.loads(result.output)
    assert report["after_bytes"] <= report["before_bytes"]
    assert report["tombstones_dropped"] == 0
    with Store.open(data_dir) as store:
        info = store.get_collection("c")
        assert (info.document_count, info.tombstone_count) == (1500, 0)
        assert len(list(store.changes_since(0, collection="c"))) == 1500


def test_cli_compact_through_a_serving_node_needs_an_admin_token_and_reports_the_same(
        filled: Store) -> None:
    data_dir = filled.data_dir
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(1500)])
    filled.close()
    runner = CliRunner()
    with started_node(data_dir) as server:
        def compact(scope: str):
            return runner.invoke(cli, ["--node", server.address, "--token",
                                       server.tokens[scope], "compact"])

        refused = compact("write")
        assert refused.exit_code == EXIT_CODES[PermissionDenied], refused.output
        assert "admin" in refused.output
        assert server.node.get_collection("c").tombstone_count == 1500, "refused: unchanged"
        result = compact("admin")
        assert result.exit_code == 0, result.output
        assert result.output.startswith("compacted the store: ") and " MiB -> " in result.output
        assert "dropped 1500 tombstones of deleted documents" in result.output
        info = server.node.get_collection("c")
        assert (info.document_count, info.tombstone_count) == (1500, 0)
        kept = server.node.store.iter_documents("c")
        assert sum(1 for _ in kept) == 1500, "the serving node reads the rewritten store"


def test_cli_sizes_of_a_small_store_are_given_in_a_unit_that_shows_them(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        store.upsert_documents("c", texts(3))
    runner = CliRunner()
    result = runner.invoke(cli, ["--data-dir", str(tmp_path), "compact"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"compacted the store: \d+\.\d KiB -> \d+\.\d KiB\n", result.output)
    result = runner.invoke(cli, ["--data-dir", str(tmp_path), "status"])
    assert re.search(r"^store size:  \d+\.\d KiB$", result.output, re.MULTILINE)


def test_cli_compact_keeps_tombstones_a_paired_peer_sharing_the_collection_has_not_seen(
    filled: Store, tmp_path: Path
) -> None:
    data_dir = filled.data_dir
    filled.delete_documents("c", [f"doc-{i:05d}" for i in range(10)])
    filled.close()
    pair_a_laptop_sharing_c(data_dir, tmp_path / "peer")
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "compact", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tombstones_dropped"] == 0
    with Store.open(data_dir) as store:
        assert store.get_collection("c").tombstone_count == 10
        deletes = [c.doc_id for c in store.changes_since(0, collection="c")
                   if c.op is ChangeOp.DELETE]
        assert len(deletes) == 10  # the laptop still learns of them at its first sync
