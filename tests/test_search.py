"""Search mechanics with the deterministic fake embedder: exact top-k, filters, deletions, adds,
truthful stats, fingerprint and deadline refusals, and the section round trip."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from fakes import HashingEmbedder
from meshdex.index.engine import Index
from meshdex.index.errors import (
    BundleCorrupt,
    DeadlineExceeded,
    FingerprintMismatch,
    InvalidArgument,
)
from meshdex.index.params import BuildParams, SearchParams

PASSAGES = 600
WORDS = [f"word{i}" for i in range(400)]
# graph_min_nodes=0: these tests are about the graph, which small indexes skip by default.
SMALL = BuildParams(M=16, pruned_degree=6, pq_subvectors=16, pq_bits=4, cache_budget_nodes=16,
                    entry_point_count=8, graph_min_nodes=0)
STRATEGIES = ["graph", "flat"]
EXHAUSTIVE = {"ef": PASSAGES, "recompute_fraction": 1.0, "recall_target": 1.0}


class CountingEmbedder(HashingEmbedder):
    """Records every text the index asks to embed (one entry per model call)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed_documents(self, texts):
        self.calls.append(list(texts))
        return super().embed_documents(texts)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(5)
    texts = [" ".join(rng.choice(WORDS, 12)) + f" unique{i}" for i in range(PASSAGES)]
    labels = (np.arange(PASSAGES, dtype=np.uint64) * np.uint64(2654435761)) + np.uint64(2**40)
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    return texts, labels, by_label


@pytest.fixture(scope="module")
def built(corpus):
    texts, labels, _ = corpus
    return Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)


def _fetch(by_label):
    return lambda labels: [by_label[int(label)] for label in labels]


def _exact_top(embedder, texts, labels, query, k, keep=None):
    scores = embedder.embed_documents(texts) @ embedder.embed_query(query)
    order = [i for i in np.argsort(-scores, kind="stable") if keep is None or keep(int(labels[i]))]
    return [int(labels[i]) for i in order[:k]], scores[order[:k]]


def _queries(texts):
    return [" ".join(texts[i].split()[:4]) for i in range(0, PASSAGES, 37)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exhaustive_search_equals_brute_force(corpus, built, strategy):
    texts, labels, by_label = corpus
    embedder = HashingEmbedder()
    params = SearchParams(strategy=strategy, **EXHAUSTIVE)
    for query in _queries(texts):
        result = built.search(query, 5, embedder=embedder, texts=_fetch(by_label), params=params)
        _, exact_scores = _exact_top(embedder, texts, labels, query, 5)
        np.testing.assert_allclose([h.score for h in result.hits], exact_scores, atol=2e-3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_default_search_finds_the_exact_top_hits(corpus, built, strategy):
    """Bag-of-words scores tie often, so a hit counts when it scores as well as the exact k-th."""
    texts, labels, by_label = corpus
    embedder = HashingEmbedder()
    found = 0
    queries = _queries(texts)
    for query in queries:
        result = built.search(query, 3, embedder=embedder, texts=_fetch(by_label),
                              params=SearchParams(strategy=strategy))
        _, exact_scores = _exact_top(embedder, texts, labels, query, 3)
        found += sum(hit.score >= exact_scores[-1] - 1e-3 for hit in result.hits)
    assert found / (3 * len(queries)) >= 0.9


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("share", [0.5, 0.02])
def test_filters_return_k_results_when_k_exist(corpus, built, strategy, share):
    texts, labels, by_label = corpus
    allowed = set(labels[:: int(1 / share)].tolist())
    embedder = HashingEmbedder()
    k = 8
    for query in _queries(texts)[:5]:
        result = built.search(query, k, embedder=embedder, texts=_fetch(by_label),
                              accept=allowed.__contains__,
                              params=SearchParams(strategy=strategy, ef=32))
        assert len(result.hits) == k
        assert all(hit.label in allowed for hit in result.hits)
        assert result.stats.filtered_out > 0
        _, exact_scores = _exact_top(embedder, texts, labels, query, k, keep=allowed.__contains__)
        assert result.hits[0].score >= exact_scores[0] - 1e-3


def test_filter_with_fewer_matches_than_k_returns_all_matches(corpus, built):
    texts, labels, by_label = corpus
    allowed = set(labels[:3].tolist())
    result = built.search("word1 word2", 10, embedder=HashingEmbedder(), texts=_fetch(by_label),
                          accept=allowed.__contains__, params=SearchParams(strategy="graph"))
    assert {hit.label for hit in result.hits} == allowed


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_stats_are_truthful(corpus, built, strategy):
    texts, _, by_label = corpus
    embedder = CountingEmbedder()
    requested: list[int] = []

    def fetch(labels):
        requested.extend(int(x) for x in labels)
        return _fetch(by_label)(labels)

    params = SearchParams(strategy=strategy, ef=40, recompute_fraction=0.5, batch_size=7,
                          recall_target=1.0)
    result = built.search(texts[3], 5, embedder=embedder, texts=fetch, params=params)
    stats = result.stats
    assert stats.model_calls == len(embedder.calls)  # the query's call included
    assert stats.passages_recomputed == len(requested) == sum(map(len, embedder.calls[1:]))
    assert stats.passages_recomputed + stats.cache_hits == 20
    assert all(len(call) <= 7 for call in embedder.calls)
    assert stats.nodes_visited >= 40 and stats.total_seconds >= stats.model_seconds
    assert stats.strategy == strategy


def test_cached_hubs_are_never_recomputed(corpus):
    texts, labels, by_label = corpus
    params = dataclasses.replace(SMALL, cache_budget_nodes=PASSAGES)
    index = Index.build(texts, labels, embedder=HashingEmbedder(), params=params)
    embedder = CountingEmbedder()
    result = index.search(texts[0], 5, embedder=embedder, texts=_fetch(by_label))
    assert result.stats.passages_recomputed == 0 and result.stats.model_calls == 1
    assert result.stats.cache_hits >= 5


def test_full_storage_mode_reranks_without_model_calls(corpus):
    texts, labels, by_label = corpus
    params = dataclasses.replace(SMALL, storage_mode="full")
    index = Index.build(texts, labels, embedder=HashingEmbedder(), params=params)
    embedder = CountingEmbedder()
    result = index.search(texts[9], 3, embedder=embedder, texts=_fetch(by_label))
    assert result.stats.passages_recomputed == 0 and len(embedder.calls) == 1
    assert result.hits[0].label == int(labels[9])
    reopened = Index.from_sections(index.to_sections(), fingerprint=index.fingerprint,
                                   params=params)
    assert reopened.search(texts[9], 3, embedder=embedder, texts=_fetch(by_label)).hits == \
        result.hits


def test_different_fingerprint_is_refused_with_the_differences(corpus, built):
    _, _, by_label = corpus
    other = HashingEmbedder(dim=32)
    with pytest.raises(FingerprintMismatch, match="dim: 64 != 32") as caught:
        built.search("word1", 3, embedder=other, texts=_fetch(by_label))
    assert "model_hash" in str(caught.value) and caught.value.hint


def test_passed_deadline_raises(corpus, built):
    _, _, by_label = corpus
    with pytest.raises(DeadlineExceeded):
        built.search("word1", 3, embedder=HashingEmbedder(), texts=_fetch(by_label),
                     deadline=time.monotonic() - 1)


def test_removed_passages_are_never_returned(corpus):
    texts, labels, by_label = corpus
    index = Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)
    embedder = HashingEmbedder()
    first = index.search(texts[10], 5, embedder=embedder, texts=_fetch(by_label))
    gone = np.array([hit.label for hit in first.hits[:3]], dtype=np.uint64)
    assert index.remove(np.concatenate([gone, gone[:1]])) == 3
    assert len(index) == PASSAGES - 3
    for strategy in STRATEGIES:
        after = index.search(texts[10], 5, embedder=embedder, texts=_fetch(by_label),
                             params=SearchParams(strategy=strategy))
        assert len(after.hits) == 5 and not {hit.label for hit in after.hits} & set(gone.tolist())
    reopened = Index.from_sections(index.to_sections(), fingerprint=index.fingerprint,
                                   params=SMALL)
    assert len(reopened) == PASSAGES - 3


def test_added_passages_are_found_and_survive_a_round_trip(corpus):
    texts, labels, by_label = corpus
    base = PASSAGES * 2 // 3
    embedder = HashingEmbedder()
    index = Index.build(texts[:base], labels[:base], embedder=embedder, params=SMALL)
    index.add(texts[base:], labels[base:], embedder=embedder)
    assert len(index) == PASSAGES
    degrees = index.graph().degrees()
    assert degrees.max() <= SMALL.M and degrees[base:].min() >= 1
    reopened = Index.from_sections(
        {name: memoryview(data) for name, data in index.to_sections().items()},
        fingerprint=index.fingerprint, params=SMALL,
    )
    for candidate in (index, reopened):
        found = 0
        for i in range(base, PASSAGES, 20):
            result = candidate.search(texts[i], 3, embedder=embedder, texts=_fetch(by_label),
                                      params=SearchParams(strategy="graph"))
            found += result.hits[0].label == int(labels[i])
        assert found == len(range(base, PASSAGES, 20))
    with pytest.raises(InvalidArgument, match="already in the index"):
        index.add(texts[:1], labels[:1], embedder=embedder)


def test_sections_round_trip_from_memoryviews_without_copying(corpus, built):
    texts, _, by_label = corpus
    sections = {name: memoryview(bytearray(data)) for name, data in built.to_sections().items()}
    reopened = Index.from_sections(sections, fingerprint=built.fingerprint, params=SMALL,
                                   rerank_bound=built.rerank_bound)  # as the manifest gives it
    assert np.shares_memory(reopened._codes, np.frombuffer(sections["codes"], np.uint8))
    embedder = HashingEmbedder()
    for query in _queries(texts)[:4]:
        a = built.search(query, 5, embedder=embedder, texts=_fetch(by_label))
        b = reopened.search(query, 5, embedder=embedder, texts=_fetch(by_label))
        assert a.hits == b.hits


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(extra=b""), "unknown index sections"),
        (lambda s: s.pop("codes"), "missing"),
        (lambda s: s.update(codes=s["codes"][:-1]), "codes section"),
        (lambda s: s.update(id_map=s["id_map"][:-3]), "id_map"),
        (lambda s: s.update(graph_neighbors=s["graph_neighbors"][:-1]), "graph"),
    ],
)
def test_malformed_sections_are_refused(corpus, built, change, message):
    _, _, by_label = corpus
    sections = built.to_sections()
    change(sections)
    with pytest.raises(BundleCorrupt, match=message):
        index = Index.from_sections(sections, fingerprint=built.fingerprint, params=SMALL)
        index.search("word1", 3, embedder=HashingEmbedder(), texts=_fetch(by_label),
                     params=SearchParams(strategy="graph"))


def test_cache_from_another_fingerprint_is_dropped(corpus, built):
    sections = built.to_sections()
    sections["cache_ids"] = bytes(32) + sections["cache_ids"][32:]
    reopened = Index.from_sections(sections, fingerprint=built.fingerprint, params=SMALL)
    assert reopened.cache_node_count == 0 and built.cache_node_count == SMALL.cache_budget_nodes


@pytest.mark.parametrize("cls", [BuildParams, SearchParams])
def test_params_round_trip_and_refuse_unknown_keys(cls):
    assert cls.from_dict(cls().to_dict()) == cls()
    with pytest.raises(InvalidArgument, match="unknown"):
        cls.from_dict({**cls().to_dict(), "surprise": 1})
    with pytest.raises(InvalidArgument):
        cls.from_dict({"seed" if cls is BuildParams else "ef": "many"})


def test_a_search_names_its_recall_target_or_leaves_it_to_the_index():
    assert SearchParams.from_dict({"recall_target": None}).recall_target is None
    assert SearchParams.from_dict({"recall_target": 0.7}).recall_target == 0.7
    assert SearchParams.from_dict({"recall_target": 1}).recall_target == 1
    with pytest.raises(InvalidArgument, match="recall_target must be float"):
        SearchParams.from_dict({"recall_target": "high"})
    with pytest.raises(InvalidArgument, match="within"):
        SearchParams.from_dict({"recall_target": 1.5})


def test_same_passages_and_params_build_identical_sections(corpus, built):
    texts, labels, _ = corpus
    again = Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)
    assert again.to_sections() == built.to_sections()


def test_below_graph_min_nodes_no_graph_is_stored_and_search_scans_codes(corpus):
    texts, labels, by_label = corpus
    graphless = Index.build(texts, labels, embedder=HashingEmbedder(),
                            params=dataclasses.replace(SMALL, graph_min_nodes=PASSAGES + 1))
    with_graph = Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)
    assert not graphless.has_graph and with_graph.has_graph
    sections = graphless.to_sections()
    assert not {"graph_offsets", "graph_neighbors", "entry_points"} & set(sections)
    assert sum(map(len, sections.values())) < sum(map(len, with_graph.to_sections().values()))
    reopened = Index.from_sections(sections, fingerprint=graphless.fingerprint,
                                   params=graphless.params)
    result = reopened.search(texts[3], 5, embedder=HashingEmbedder(), texts=_fetch(by_label),
                             params=SearchParams(strategy="graph", **EXHAUSTIVE))
    assert result.stats.strategy == "flat"
    assert result.hits[0].label == int(labels[3])
    reopened.add(["an added passage about word7 word8"], np.array([1], dtype=np.uint64),
                 embedder=HashingEmbedder())
    found = reopened.search("an added passage about word7 word8", 1, embedder=HashingEmbedder(),
                            texts=_fetch({**by_label, 1: "an added passage about word7 word8"}))
    assert found.hits[0].label == 1
