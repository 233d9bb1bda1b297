"""The cache that learns (exact embeddings searches recomputed) and pinned documents: budget,
LFU with ageing, restart, fingerprint binding, and searches that skip the recompute."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fakes import HashingEmbedder
from meshdex.index.engine import Index
from meshdex.index.errors import FingerprintMismatch, ResourceExhausted
from meshdex.index.learned_cache import (
    AGEING_PERIOD_LOOKUPS,
    LearnedCache,
    PinnedVectors,
    entry_bytes,
)
from meshdex.index.params import BuildParams, SearchParams
from meshdex.node import search_caches
from meshdex.node.indexing import IndexManager
from meshdex.node.service import Node
from topic_corpus import TOPICS, topic_documents

DIM = 16
DIGEST = "ab" * 32
OTHER_DIGEST = "cd" * 32


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _cache(entries: int) -> LearnedCache:
    return LearnedCache(fingerprint_digest=DIGEST, dim=DIM, budget_bytes=entries * entry_bytes(DIM))


@pytest.mark.parametrize("entries, offered", [(0, 10), (1, 10), (5, 3), (64, 500)])
def test_the_cache_never_exceeds_its_budget(entries, offered):
    cache = _cache(entries)
    for start in range(0, offered, 7):
        labels = np.arange(start, min(start + 7, offered), dtype=np.uint64)
        cache.remember(labels, _vectors(len(labels), start), DIGEST)
        assert cache.used_bytes <= cache.budget_bytes
    assert len(cache) == min(entries, offered)


def test_lookups_return_the_remembered_vectors():
    cache = _cache(10)
    vectors = _vectors(4)
    cache.remember(np.array([5, 6, 7, 8], dtype=np.uint64), vectors, DIGEST)
    hit, found = cache.lookup(np.array([7, 99, 5], dtype=np.uint64), DIGEST)
    assert hit.tolist() == [True, False, True]
    np.testing.assert_allclose(found, vectors[[2, 0]], atol=1e-3)  # fp16


def test_frequently_used_entries_survive_a_flood_and_fade_with_age():
    cache = _cache(8)
    cache.remember(np.array([1], dtype=np.uint64), _vectors(1), DIGEST)
    for _ in range(5):
        cache.lookup(np.array([1], dtype=np.uint64), DIGEST)
    for start in range(100, 300, 4):  # one-off passages, each seen once
        cache.remember(np.arange(start, start + 4, dtype=np.uint64), _vectors(4, start), DIGEST)
    assert 1 in cache
    # Ageing halves every count each period, so an entry no longer asked for loses its lead.
    for _ in range(6 * AGEING_PERIOD_LOOKUPS // 8):
        cache.lookup(np.arange(500, 508, dtype=np.uint64), DIGEST)
    for start in range(1000, 1040, 4):
        labels = np.arange(start, start + 4, dtype=np.uint64)
        cache.remember(labels, _vectors(4, start), DIGEST)
        cache.lookup(labels, DIGEST)
    assert 1 not in cache


def test_a_repeated_query_set_larger_than_the_cache_still_finds_what_it_kept():
    """Twenty queries of five passages each through a cache of ten: a resident is not pushed
    out by a newcomer seen as often, so the second pass finds the ten the cache kept (evicting
    the oldest on every newcomer would leave the second pass nothing: issue 12's 97%)."""
    cache = _cache(10)
    groups = [np.arange(5 * g, 5 * g + 5, dtype=np.uint64) for g in range(20)]
    hits = []
    for _ in range(2):
        found = 0
        for labels in groups:
            hit, _ = cache.lookup(labels, DIGEST)
            found += int(hit.sum())
            cache.remember(labels[~hit], _vectors(int((~hit).sum()), int(labels[0])), DIGEST)
        hits.append(found)
    assert hits == [0, 10]


def test_a_saved_cache_reloads_and_is_dropped_for_another_fingerprint(tmp_path):
    cache = _cache(10)
    cache.remember(np.arange(6, dtype=np.uint64), _vectors(6), DIGEST)
    path = tmp_path / "c.learned-cache"
    cache.save(path)
    same = LearnedCache.load(path, fingerprint_digest=DIGEST, dim=DIM,
                             budget_bytes=cache.budget_bytes)
    assert len(same) == 6
    other = LearnedCache.load(path, fingerprint_digest=OTHER_DIGEST, dim=DIM,
                              budget_bytes=cache.budget_bytes)
    assert len(other) == 0
    smaller = LearnedCache.load(path, fingerprint_digest=DIGEST, dim=DIM,
                                budget_bytes=2 * entry_bytes(DIM))
    assert len(smaller) == 2 and smaller.used_bytes <= smaller.budget_bytes


@pytest.mark.parametrize("damage", [
    lambda data: data[:-1],
    lambda data: data[:20],
    lambda data: data[:40] + bytes([data[40] ^ 1]) + data[41:],
    lambda data: b"not a cache at all" * 10,
])
def test_a_damaged_cache_file_is_dropped_not_fatal(tmp_path, damage):
    cache = _cache(4)
    cache.remember(np.arange(3, dtype=np.uint64), _vectors(3), DIGEST)
    path = tmp_path / "c.learned-cache"
    cache.save(path)
    path.write_bytes(damage(path.read_bytes()))
    loaded = LearnedCache.load(path, fingerprint_digest=DIGEST, dim=DIM,
                               budget_bytes=cache.budget_bytes)
    assert len(loaded) == 0


def test_a_cache_of_another_model_is_never_consulted():
    texts = [f"{' '.join(words.split()[i % 4:])} note {i}" for i, words in
             enumerate(list(TOPICS.values()) * 20)]
    labels = np.arange(1, len(texts) + 1, dtype=np.uint64)
    index = Index.build(texts, labels, embedder=HashingEmbedder(),
                        params=BuildParams(pq_subvectors=16, cache_budget_nodes=0))
    foreign = LearnedCache(fingerprint_digest=OTHER_DIGEST, dim=64, budget_bytes=1 << 20)
    with pytest.raises(FingerprintMismatch):
        index.search("rocket orbit", 3, embedder=HashingEmbedder(),
                     texts=lambda ls: [texts[int(x) - 1] for x in ls], vector_caches=[foreign])
    with pytest.raises(FingerprintMismatch):
        foreign.lookup(labels, DIGEST)


def test_pins_beyond_their_budget_are_refused_and_pin_nothing():
    pinned = PinnedVectors(fingerprint_digest=DIGEST, dim=DIM, budget_bytes=3 * entry_bytes(DIM))
    assert pinned.pin(np.array([1, 2], dtype=np.uint64), _vectors(2), DIGEST) == 2
    with pytest.raises(ResourceExhausted, match="pin budget"):
        pinned.pin(np.array([3, 4], dtype=np.uint64), _vectors(2), DIGEST)
    assert len(pinned) == 2
    pinned.remember(np.array([9], dtype=np.uint64), _vectors(1), DIGEST)  # searches: no-op
    assert 9 not in pinned


def test_unpinned_vectors_free_their_budget_and_the_rest_keep_theirs(tmp_path):
    pinned = PinnedVectors(fingerprint_digest=DIGEST, dim=DIM, budget_bytes=3 * entry_bytes(DIM))
    vectors = _vectors(3)
    pinned.pin(np.array([1, 2, 3], dtype=np.uint64), vectors, DIGEST)
    assert pinned.forget([2, 7]) == 1
    assert pinned.labels() == {1, 3}
    assert pinned.pin(np.array([4], dtype=np.uint64), _vectors(1, seed=1), DIGEST) == 1
    pinned.save(tmp_path / "pins")
    loaded = PinnedVectors.load(tmp_path / "pins", fingerprint_digest=DIGEST, dim=DIM,
                                budget_bytes=pinned.budget_bytes)
    hit, found = loaded.lookup(np.array([1, 2, 3], dtype=np.uint64), DIGEST)
    assert hit.tolist() == [True, False, True]
    np.testing.assert_allclose(found, vectors[[0, 2]], atol=1e-2)


class RecordingEmbedder(HashingEmbedder):
    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim=dim)
        self.embedded: list[str] = []

    def embed_documents(self, texts):
        self.embedded.extend(texts)
        return super().embed_documents(texts)



def _open(data_dir, embedder) -> Node:
    node = Node.open(data_dir)
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: embedder)
    return node


QUERIES = ["rocket orbit planet", "flour butter recipe", "guitar melody drum"]
ALWAYS_RECOMPUTE = {"recall_target": 1.0}


def test_the_learned_cache_survives_a_restart_and_saves_recomputes(tmp_path, monkeypatch):
    monkeypatch.setattr(search_caches, "LEARNED_PASSAGE_FRACTION", 1.0)  # room for all
    embedder = RecordingEmbedder()
    with _open(tmp_path / "data", embedder) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        cold = [node.search("c", q, top_k=3, params=ALWAYS_RECOMPUTE).stats for q in QUERIES]
    assert sum(s.passages_recomputed for s in cold) > 0
    with _open(tmp_path / "data", RecordingEmbedder()) as node:
        warm = [node.search("c", q, top_k=3, params=ALWAYS_RECOMPUTE).stats for q in QUERIES]
    assert sum(s.passages_recomputed for s in warm) == 0
    assert [s.cache_hits for s in warm] == [s.reranked for s in warm]


def test_the_learned_cache_is_dropped_when_the_model_changes(tmp_path):
    with _open(tmp_path / "data", RecordingEmbedder()) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        for query in QUERIES:
            node.search("c", query, top_k=3)
    other = RecordingEmbedder(dim=128)  # another fingerprint
    with _open(tmp_path / "data", other) as node:
        node.build("c")
        stats = node.search("c", QUERIES[0], top_k=3, params=ALWAYS_RECOMPUTE).stats
    assert stats.cache_hits == 0 and stats.passages_recomputed > 0


def test_pinned_documents_are_never_recomputed(tmp_path):
    embedder = RecordingEmbedder()
    with _open(tmp_path / "data", embedder) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        report = node.pin("c", "topic=space")
        assert (report.documents, report.newly_pinned) == (30, report.passages)
        assert report.pinned_bytes <= report.budget_bytes
    embedder = RecordingEmbedder()
    with _open(tmp_path / "data", embedder) as node:  # pins survive a restart
        results = node.search("c", "rocket orbit planet comet", top_k=5,
                              params=SearchParams(recall_target=1.0, recompute_fraction=1.0))
    assert all(hit.document_id.startswith("space-") for hit in results.hits)
    assert not [text for text in embedder.embedded if "note space" in text]


def test_unpinned_documents_are_recomputed_again(tmp_path):
    with _open(tmp_path / "data", RecordingEmbedder()) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        pinned = node.pin("c", "topic=space or topic=cooking")
        unpinned = node.unpin("c", "topic=space")
        assert (unpinned.documents, unpinned.unpinned) == (30, 30)
        assert unpinned.pinned_total == pinned.pinned_total - 30
        assert unpinned.pinned_bytes < pinned.pinned_bytes
    embedder = RecordingEmbedder()
    with _open(tmp_path / "data", embedder) as node:  # the unpin was saved
        node.search("c", "rocket orbit planet comet", top_k=5,
                    params=SearchParams(recall_target=1.0, recompute_fraction=1.0))
        assert [text for text in embedder.embedded if "note space" in text]
        everything = node.unpin("c", None)
        assert (everything.unpinned, everything.pinned_total, everything.pinned_bytes) == (
            30, 0, 0)


def test_pins_of_edited_documents_are_released_when_pinning_again(tmp_path):
    """An edited document's old passages are held by no document: their pins would hold the
    budget for good (nothing else removes a pin), so pinning again releases them."""
    with _open(tmp_path / "data", RecordingEmbedder()) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        node.pin("c", "topic=space")
        node.upsert_documents("c", [replace(document, text=f"{document.text} revised")
                                    for document in topic_documents()
                                    if document.id.startswith("space-")])
        node.build("c")
        again = node.pin("c", "topic=space")
    assert (again.released, again.newly_pinned, again.pinned_total) == (30, 30, 30)


def test_compact_releases_the_pins_of_deleted_documents(tmp_path):
    with _open(tmp_path / "data", RecordingEmbedder()) as node:
        node.create_collection("c")
        node.upsert_documents("c", topic_documents())
        node.build("c")
        node.pin("c", "topic=space")
        node.delete_documents("c", [f"space-{i}" for i in range(10)])
        node.compact()
    with _open(tmp_path / "data", RecordingEmbedder()) as node:  # the release was saved
        assert node.unpin("c", None).unpinned == 20


WARM_PASSAGES = 600
WARM_WORDS = [f"word{i}" for i in range(400)]


class _RecordingCache:
    """Holds every vector it is offered (no budget) and remembers which labels those were."""

    def __init__(self, dim: int) -> None:
        self.offered: set[int] = set()
        self._dim = dim

    def lookup(self, labels, fingerprint_digest):
        return np.zeros(len(labels), dtype=bool), np.zeros((0, self._dim), dtype=np.float32)

    def remember(self, labels, vectors, fingerprint_digest):
        self.offered.update(labels.tolist())


def test_the_same_questions_again_recompute_almost_nothing_within_a_tight_budget():
    """A cache with room for exactly what the questions need again (measured by a first pass
    that records what the search offers) makes their repeat nearly free: the search offers
    only passages a repeat would recompute, not those it recomputed while the k-th best score
    was still low, so those cannot crowd the needed ones out."""
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WARM_WORDS, 12)) + f" unique{i}" for i in range(WARM_PASSAGES)]
    labels = np.arange(WARM_PASSAGES, dtype=np.uint64) + np.uint64(1 << 33)
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder,
                        params=BuildParams(pq_subvectors=16, cache_budget_nodes=0))
    questions = [" ".join(texts[i].split()[:4]) for i in range(0, WARM_PASSAGES, 13)]

    def recomputed(cache) -> int:
        return sum(index.search(q, 10, embedder=embedder,
                                texts=lambda ls: [by_label[int(x)] for x in ls],
                                vector_caches=[cache]).stats.passages_recomputed
                   for q in questions)

    recorder = _RecordingCache(embedder.dim)
    everything = recomputed(recorder)
    needed = len(recorder.offered)
    cache = LearnedCache(fingerprint_digest=index.fingerprint.digest(), dim=embedder.dim,
                         budget_bytes=needed * entry_bytes(embedder.dim))
    cold = recomputed(cache)
    warm = recomputed(cache)
    assert cold > 0 and needed < everything
    assert warm <= 0.05 * cold, (cold, warm, needed)
