"""Builds, deltas and imports of one collection run one at a time, over a real gRPC node and
real LMDB (issue 8, item 2): a bundle records the store state it read, generations never
collide or go down, and status calls an index current only when it is.

The embedder is the hashing double with a gate: it holds a build inside its embedding step so
a write or a second build lands exactly then (the timing is the mechanics under test).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fakes import HashingEmbedder
from grpc_support import started_node
from meshdex.node.bundle_transfer import export_bundle, import_bundle
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store

COLLECTION = "docs"


class GatedEmbedder(HashingEmbedder):
    """Embeds like ``HashingEmbedder``; while ``gate`` is closed, each document batch waits."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def embed_documents(self, texts):
        self.entered.set()
        assert self.gate.wait(30), "gate never opened"
        return super().embed_documents(texts)


def _docs(prefix: str, count: int) -> list[DocumentInput]:
    return [DocumentInput(id=f"{prefix}-{i}", text=f"{prefix} passage number {i} about "
                          f"topic {prefix}{i}") for i in range(count)]


def _gated_node(data_dir):
    embedder = GatedEmbedder()
    store = Store.open(data_dir)
    node = Node(store, indexes=IndexManager(store, embedder_factory=lambda _info: embedder))
    node.create_collection(COLLECTION)
    node.upsert_documents(COLLECTION, _docs("base", 40))
    return node, embedder


def _hashing_node(data_dir) -> Node:
    store = Store.open(data_dir)
    return Node(store, indexes=IndexManager(store, embedder_factory=lambda _: HashingEmbedder()))


def test_a_write_during_a_build_leaves_the_index_stale_and_the_next_build_adds_it(tmp_path):
    node, embedder = _gated_node(tmp_path)
    try:
        with started_node(tmp_path, node=node) as server, server.client() as client, \
                ThreadPoolExecutor(1) as pool:
            client.build(COLLECTION)
            embedder.gate.clear()
            embedder.entered.clear()
            build = pool.submit(client.build, COLLECTION, rebuild=True)
            assert embedder.entered.wait(10)
            client.upsert_documents(COLLECTION, _docs("late", 5))  # while the build embeds
            embedder.gate.set()
            report = build.result(timeout=30)

            assert report.passages == node.indexes.stats(COLLECTION).passages == 40
            summary = client.status().indexes[0]
            assert summary.stale, "the bundle was called current without the late documents"
            follow_up = client.build(COLLECTION)
            assert (follow_up.action, follow_up.added) == ("delta", 5)
            assert not client.status().indexes[0].stale
            hits = client.search(COLLECTION, "late passage number 3 topic late3", top_k=3)
            assert "late-3" in [hit.document_id for hit in hits.hits]
    finally:
        node.close()


def test_concurrent_builds_run_one_at_a_time_with_rising_generations(tmp_path):
    node, embedder = _gated_node(tmp_path)
    try:
        with started_node(tmp_path, node=node) as server, server.client() as client, \
                ThreadPoolExecutor(2) as pool:
            first = client.build(COLLECTION).generation
            for round_ in range(2):
                embedder.gate.clear()
                embedder.entered.clear()
                rebuild = pool.submit(client.build, COLLECTION, rebuild=True)
                assert embedder.entered.wait(10)
                client.upsert_documents(COLLECTION, _docs(f"round{round_}", 2))
                delta = pool.submit(client.build, COLLECTION)
                embedder.gate.set()
                reports = [rebuild.result(timeout=30), delta.result(timeout=30)]
                generations = [report.generation for report in reports]
                assert generations == [first + 1, first + 2], generations
                first = generations[-1]
                # the later build saw what the slower rebuild had not: nothing is lost
                assert reports[1].action == "delta" and reports[1].added == 2
                assert not client.status().indexes[0].stale
    finally:
        node.close()


def test_an_imported_bundle_never_lowers_the_generation(tmp_path):
    with _hashing_node(tmp_path / "elsewhere") as other:
        other.create_collection(COLLECTION)
        other.upsert_documents(COLLECTION, _docs("base", 10))
        other.build(COLLECTION)
        export_bundle(other, COLLECTION, tmp_path / "g1.leann", with_documents=True)
    with _hashing_node(tmp_path / "here") as node:
        node.create_collection(COLLECTION)
        node.upsert_documents(COLLECTION, _docs("base", 10))
        for _ in range(3):
            node.build(COLLECTION, rebuild=True)
        assert node.indexes.manifest(COLLECTION).generation == 3
        report = import_bundle(node, tmp_path / "g1.leann")
        # installed as 4; its local delta, with every passage indexed already, writes 5 to
        # record the store state here it covers (the installed one has only the sender's)
        assert report.generation == node.indexes.manifest(COLLECTION).generation == 5
        assert not node.status().indexes[0].stale
