"""Store format 4: a passage reference names its document by the seq of its record, not by its
id. Long ids (paths) are no longer repeated per passage, every write that moves a document to
a new seq moves its references, and a format-3 store (written by format 3's own code) is
upgraded in place, atomically under kill -9."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from meshdex.index.chunking import ChunkingParams, passage_key, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.errors import StoreCorrupt
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.store import STORE_FORMAT_VERSION, Store
from meshdex.node.store import documents as documents_module
from meshdex.node.store.codec import U64
from meshdex.node.store.documents import Documents
from meshdex.node.store.store import stored_format_version

from tests.test_store_blocks import write_store_at

V3_COMMIT = "68037ae"  # the last commit that wrote store format 3
CHUNKING = ChunkingParams(max_chars=200, overlap_chars=20)
LONG_ID = "library/asyncio-eventloop-and-its-policies.rst.txt"

WRITE_V3 = """
import json, sys
from pathlib import Path
import numpy as np
from meshdex.index.chunking import ChunkingParams, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.records import DocumentInput
from meshdex.node.store import Store, STORE_FORMAT_VERSION
from meshdex.node.store import store as store_module
assert store_module.__file__.startswith(sys.argv[2]), store_module.__file__
assert STORE_FORMAT_VERSION == 3
shared = "A paragraph two documents share word for word, so its passage has two holders."
with Store.open(Path(sys.argv[1])) as store:
    store.create_collection("c", embedder=EmbedderSpec(),
                            chunking=ChunkingParams(max_chars=200, overlap_chars=20))
    store.upsert_documents("c", [DocumentInput(
        id=f"library/file-{i:04d}-with-a-long-path.rst.txt",
        text=f"File {i} explains topic {i * 7919 % 10007} at some length. " * 6,
        metadata={"n": i}) for i in range(600)] + [
        DocumentInput(id=f"shared/{name}.txt", text=shared) for name in ("b", "a")])
    store.delete_documents("c", [f"library/file-{i:04d}-with-a-long-path.rst.txt"
                                 for i in range(0, 600, 7)])
    store.upsert_documents("c", [DocumentInput(  # text unchanged: only the metadata moves
        id="library/file-0001-with-a-long-path.rst.txt",
        text="File 1 explains topic 7919 at some length. " * 6, metadata={"n": "edited"})])
    passages = list(store.iter_passages("c"))
    labels = [passage_label(key) for key, _ in passages]
    holders = {str(label): [d.id for d in store.passage_holders("c", label)] for label in labels}
    texts = store.passage_texts("c", np.array(labels, dtype=np.uint64))
    json.dump({"labels": labels, "texts": texts, "holders": holders,
               "documents": {d.id: [d.text, d.metadata] for d in store.iter_documents("c")}},
              open(Path(sys.argv[1]) / "expected.json", "w"))
"""

KILL_DURING_UPGRADE = """
import os, signal, sys
from pathlib import Path
from meshdex.node.store import Store, migration
real = migration.reference_key
calls = [0]
def dying(*args):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
migration.reference_key = dying
Store.open(Path(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def v3_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A format-3 data directory written by format 3's code, and what it answered then."""
    scratch = tmp_path_factory.mktemp("v3")
    data_dir = scratch / "data"
    write_store_at(V3_COMMIT, WRITE_V3, data_dir, scratch / "code")
    expected = json.loads((data_dir / "expected.json").read_text())
    return data_dir, expected


def copy_of(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(data_dir), str(copy)], check=True)
    return copy


def answers(store: Store, labels: list[int]) -> dict:
    return {
        "texts": store.passage_texts("c", np.array(labels, dtype=np.uint64)),
        "holders": {str(label): [d.id for d in store.passage_holders("c", label)]
                    for label in labels},
        "documents": {d.id: [d.text, d.metadata] for d in store.iter_documents("c")},
    }


def reference_keys(store: Store) -> list[bytes]:
    env = store._parts.env
    with env.begin_read() as txn:
        return [bytes(key) for key, _ in txn.cursor(db=env.dbs.passages).iternext()]


def test_a_format_3_store_opens_upgraded_and_answers_as_before(
    v3_store: tuple[Path, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = copy_of(v3_store[0], tmp_path)
    expected = v3_store[1]
    assert stored_format_version(data_dir / STORE_DIR_NAME) == 3
    with caplog.at_level(logging.WARNING), Store.open(data_dir) as store:
        assert store.format_version == STORE_FORMAT_VERSION == 4
        got = answers(store, expected["labels"])
        assert got == {key: expected[key] for key in ("texts", "holders", "documents")}
        assert any(len(holders) == 2 for holders in got["holders"].values())
        keys = reference_keys(store)
        assert len(keys) == sum(len(h) for h in expected["holders"].values())
        assert max(len(key) for key in keys) <= 4 + 8 + 2  # seqs below 16,384: two bytes
        # Written after the upgrade: the old references and the new ones serve alike.
        store.upsert_documents("c", [DocumentInput(id="new", text="Written by format 4.")])
        assert store.passage_holders("c", passage_label(passage_key("Written by format 4.")))
    messages = [r.message for r in caplog.records]
    assert any("from format 3 to 4" in m and "passage reference" in m for m in messages)


@pytest.mark.parametrize("kill_at", [1, 400])
def test_kill_9_during_the_upgrade_leaves_the_format_3_store(
    v3_store: tuple[Path, dict], tmp_path: Path, kill_at: int
) -> None:
    data_dir = copy_of(v3_store[0], tmp_path)
    expected = v3_store[1]
    process = subprocess.run([sys.executable, "-c", KILL_DURING_UPGRADE, str(data_dir),
                              str(kill_at)], capture_output=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert stored_format_version(data_dir / STORE_DIR_NAME) == 3
    with Store.open(data_dir) as store:
        assert store.format_version == 4
        got = answers(store, expected["labels"])
        assert got == {key: expected[key] for key in ("texts", "holders", "documents")}


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as opened:
        opened.create_collection("c", embedder=EmbedderSpec(), chunking=CHUNKING)
        yield opened


def holders(store: Store, text: str) -> list[str]:
    return [d.id for d in store.passage_holders("c", passage_label(passage_key(text)))]


def test_a_long_id_is_not_repeated_per_passage(store: Store) -> None:
    text = " ".join(f"Sentence {i} of a long file about event loops." for i in range(60))
    store.upsert_documents("c", [DocumentInput(id=LONG_ID, text=text)])
    keys = reference_keys(store)
    assert len(keys) == store.get_collection("c").passage_count > 10
    assert all(LONG_ID.encode() not in key and len(key) <= 4 + 8 + 2 for key in keys)


def test_writes_that_move_a_document_to_a_new_seq_keep_its_passages_found(
    store: Store,
) -> None:
    shared = "The same sentence in two documents, one passage with two holders."
    store.upsert_documents("c", [DocumentInput(id="b", text=shared),
                                 DocumentInput(id="a", text=shared)])
    assert holders(store, shared) == ["a", "b"]  # by id, not by seq: the same on every device
    before = len(reference_keys(store))
    store.upsert_documents("c", [DocumentInput(id="b", text=shared, metadata={"k": 1})])
    assert holders(store, shared) == ["a", "b"]
    assert len(reference_keys(store)) == before  # moved, not copied
    store.delete_documents("c", ["a"])
    assert holders(store, shared) == ["b"]
    assert store.passage_texts("c", np.array([passage_label(passage_key(shared))],
                                             dtype=np.uint64)) == [shared]
    store.upsert_documents("c", [DocumentInput(id="b", text="Something else entirely.")])
    assert holders(store, shared) == []
    assert store.get_collection("c").passage_count == 1


def test_a_reference_whose_document_entry_is_gone_is_store_corrupt(store: Store) -> None:
    store.upsert_documents("c", [DocumentInput(id="a", text="A lone passage.")])
    env = store._parts.env
    with env.lmdb.begin(write=True) as txn:
        seq = store.last_seq
        assert txn.delete(U64.pack(seq), db=env.dbs.changes)
    with pytest.raises(StoreCorrupt, match="passage reference.*change-log entry"):
        holders(store, "A lone passage.")


def test_a_search_reads_each_document_once_and_holders_skip_its_spans(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search's candidates are often neighbours in one file: their texts come from one
    decode of its record and text, and checking their holders decodes no spans at all."""
    text = "\n".join(f"Sentence {i} of a long file about event loops.\r" for i in range(80))
    store.upsert_documents("c", [DocumentInput(id=LONG_ID, text=text, metadata={"k": 1}),
                                 DocumentInput(id="other", text="A lone passage.")])
    passages = list(store.iter_passages("c"))
    assert len(passages) > 10
    labels = [passage_label(key) for key, _ in reversed(passages)]
    decodes, span_decodes = [], []
    original_live, original_spans = Documents.live, documents_module._text_and_spans

    def counting_live(self, txn, prefix, doc_id):
        decodes.append(doc_id)
        return original_live(self, txn, prefix, doc_id)

    def counting_spans(reader, flags):
        span_decodes.append(1)
        return original_spans(reader, flags)

    monkeypatch.setattr(Documents, "live", counting_live)
    monkeypatch.setattr(documents_module, "_text_and_spans", counting_spans)
    assert store.passage_texts("c", np.array(labels, dtype=np.uint64)) == [
        passage for _, passage in reversed(passages)]
    assert sorted(decodes) == [LONG_ID, "other"]
    assert len(span_decodes) == 2
    span_decodes.clear()
    infos = [store.passage_holders("c", label) for label in labels]
    held = [[(d.id, d.metadata) for d in found] for found in infos]
    assert held.count([(LONG_ID, {"k": 1})]) == len(labels) - 1
    assert span_decodes == []
    store.delete_documents("c", [LONG_ID])
    after = {label: [d.id for d in store.passage_holders("c", label)] for label in labels}
    assert {label: ids for label, ids in after.items() if ids} == {
        passage_label(passage_key("A lone passage.")): ["other"]}
