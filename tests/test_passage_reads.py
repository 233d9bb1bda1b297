"""A search reads the store from one snapshot: the candidates it checks and the texts it
recomputes are the same moment, whatever is written meanwhile, and each label's holders and
each document are read once per search."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import HashingEmbedder
from meshdex.index.chunking import passage_label
from meshdex.index.params import SearchParams
from meshdex.node.indexing import HitResolver, IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store.documents import Documents
from meshdex.node.store.passages import PassageIndex
from topic_corpus import topic_documents


class DeletingEmbedder(HashingEmbedder):
    """Deletes documents from the node while a search recomputes: once ``armed``, its second
    model call (the first after the query's) deletes ``victims``."""

    def __init__(self) -> None:
        super().__init__(batch_size=2)
        self.node: Node | None = None
        self.victims: list[str] = []
        self.calls_armed = 0

    def embed_documents(self, texts):
        if self.node is not None:
            self.calls_armed += 1
            if self.calls_armed == 2:
                self.node.delete_documents("c", self.victims)
        return super().embed_documents(texts)


@pytest.fixture
def node(tmp_path):
    with Node.open(tmp_path / "data") as opened:
        yield opened


def test_a_search_finishes_while_the_documents_it_recomputes_are_deleted(node):
    embedder = DeletingEmbedder()
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: embedder)
    node.create_collection("c")
    node.upsert_documents("c", topic_documents(per_topic=10, words=12))
    node.build("c")
    music = [f"music-{i}" for i in range(10)]
    embedder.node, embedder.victims = node, music
    # batches of 2 and every candidate recomputed: many texts are read after the delete
    params = SearchParams(batch_size=2, recompute_fraction=1.0, recall_target=1.0)
    results = node.search("c", "guitar chord melody", top_k=5, params=params)
    assert embedder.calls_armed > 2, "the delete did not land inside the search"
    assert len(results.hits) == 5
    assert results.hits[0].metadata["topic"] == "music"  # what the search saw when it began
    embedder.node = None
    after = node.search("c", "guitar chord melody", top_k=5, params=params)
    assert all(hit.metadata["topic"] != "music" for hit in after.hits)


def test_reads_keep_their_snapshot_and_the_store_moves_on(node):
    node.create_collection("c")
    node.upsert_documents("c", [DocumentInput(id="a", text="Alpha passage about comets."),
                                DocumentInput(id="b", text="Beta passage about guitars.")])
    (key, text), = [(k, t) for k, t in node.store.iter_passages("c") if "comets" in t]
    label = passage_label(key)
    with node.store.passage_reads("c") as reads:
        resolver = HitResolver(reads, None)
        assert resolver.accept(label)
        node.delete_documents("c", ["a"])
        assert resolver.texts(np.array([label], dtype=np.uint64)) == [text]
        hit = resolver.hit(label, 0.5)
        assert hit is not None and (hit.document_id, hit.passage) == ("a", text)
    assert node.store.passage_holders("c", label) == []
    with node.store.passage_reads("c") as reads:
        assert not HitResolver(reads, None).accept(label)


def test_a_search_looks_up_each_label_and_decodes_each_document_once(node, monkeypatch):
    node.create_collection("c")
    node.upsert_documents("c", topic_documents(per_topic=10, words=40))
    passages = list(node.store.iter_passages("c"))
    labels = [passage_label(key) for key, _ in passages]
    lookups: list[int] = []
    decodes: list[str] = []
    real_holders, real_live = PassageIndex.holders, Documents.live

    def counting_holders(self, txn, prefix, label):
        lookups.append(label)
        return real_holders(self, txn, prefix, label)

    def counting_live(self, txn, prefix, doc_id):
        decodes.append(doc_id)
        return real_live(self, txn, prefix, doc_id)

    monkeypatch.setattr(PassageIndex, "holders", counting_holders)
    monkeypatch.setattr(Documents, "live", counting_live)
    with node.store.passage_reads("c") as reads:
        resolver = HitResolver(reads, None)
        assert all(resolver.accept(label) for label in labels)
        texts = resolver.texts(np.array(labels, dtype=np.uint64))
        for label in labels:
            resolver.hit(label, 1.0)
    assert texts == [text for _, text in passages]
    assert sorted(lookups) == sorted(labels), "a label's holders were looked up again"
    assert len(decodes) == len(set(decodes)) == len({d.id for d in node.store.iter_documents("c")})


def test_reads_begun_before_a_compaction_finish_on_their_snapshot(node):
    node.create_collection("c")
    node.upsert_documents("c", topic_documents(per_topic=10, words=40))
    passages = list(node.store.iter_passages("c"))
    labels = [passage_label(key) for key, _ in passages]
    with node.store.passage_reads("c") as reads:
        resolver = HitResolver(reads, None)
        assert all(resolver.accept(label) for label in labels)
        node.delete_documents("c", [doc.id for doc in node.store.iter_documents("c")][::2])
        node.store.compact()
        assert resolver.texts(np.array(labels, dtype=np.uint64)) == [t for _, t in passages]
    live = [label for label in labels if node.store.passage_holders("c", label)]
    assert 0 < len(live) < len(labels)
