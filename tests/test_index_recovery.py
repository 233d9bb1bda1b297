"""A damaged or misplaced installed bundle, on a real store (issue 8, item 4): search, status and
build name the damage and the way back, ``build --rebuild`` rebuilds from the documents, and the
generation continues from the last one recorded."""

from __future__ import annotations

import shutil

import pytest
from fakes import HashingEmbedder
from meshdex.index.errors import BundleCorrupt
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store

REBUILD_HINT = "rebuild it from the documents: meshdex build --rebuild --collection docs"


def _node(data_dir) -> Node:
    store = Store.open(data_dir)
    return Node(store, indexes=IndexManager(store, embedder_factory=lambda _: HashingEmbedder()))


def _flip_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _empty(path):
    path.write_bytes(b"")


def _other_collections_bundle(path):
    shutil.copyfile(path.with_name("other.leann"), path)


DAMAGE = {
    "empty": _empty,
    "truncated": _truncate,
    "byte-flipped": _flip_middle_byte,
    "another collection's bundle": _other_collections_bundle,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_named_and_rebuild_recovers_it(tmp_path, damage):
    with _node(tmp_path) as node:
        for name in ("docs", "other"):
            node.create_collection(name)
            node.upsert_documents(name, [
                DocumentInput(id=f"{name}-{i}", text=f"{name} text number {i} about owls")
                for i in range(30)])
        node.build("other")
        for _ in range(3):
            node.build("docs", rebuild=True)
        DAMAGE[damage](node.indexes.bundle_path("docs"))

        with pytest.raises(BundleCorrupt, match="installed index of collection 'docs' is "
                           "damaged") as searched:
            node.search("docs", "owls number 7")
        assert REBUILD_HINT in str(searched.value)
        summary = {index.collection: index for index in node.status().indexes}["docs"]
        assert "is damaged" in summary.damaged and REBUILD_HINT in summary.damaged
        with pytest.raises(BundleCorrupt, match="rebuild"):
            node.build("docs")

        report = node.build("docs", rebuild=True)
        assert (report.action, report.generation, report.passages) == ("built", 4, 30)
        hits = node.search("docs", "docs text number 7 about owls", top_k=1).hits
        assert hits[0].document_id == "docs-7"
        summary = {index.collection: index for index in node.status().indexes}["docs"]
        assert (summary.damaged, summary.stale) == ("", False)
