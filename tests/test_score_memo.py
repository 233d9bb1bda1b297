"""The query score memo: a repeated question recomputes nothing and gets the same hits; it is
keyed by fingerprint, kept to its budget, never brings back a deleted passage, and is
reported in the search stats."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from fakes import HashingEmbedder, SlowHashingEmbedder
from meshdex.index.engine import Index
from meshdex.index.errors import DeadlineExceeded
from meshdex.index.learned_cache import LearnedCache, entry_bytes
from meshdex.index.params import BuildParams, SearchParams
from meshdex.index.score_memo import QUERY_OVERHEAD_BYTES, SCORE_BYTES, QueryScoreMemo
from meshdex.node import wire
from meshdex.node.indexing import IndexManager
from meshdex.node.service import Node
from topic_corpus import TOPICS, topic_documents

PASSAGES = 600
WORDS = [f"word{i}" for i in range(400)]
SMALL = BuildParams(pq_subvectors=16, cache_budget_nodes=0)
DIGEST = "ab" * 32
MEMO_TOPICS = {name: TOPICS[name] for name in ("space", "cooking", "music")}


class Bf16HashingEmbedder(HashingEmbedder):
    """The hashing embedder under another fingerprint (same vectors, another precision)."""

    @property
    def fingerprint(self):
        return dataclasses.replace(super().fingerprint, precision="bf16")


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, 12)) + f" unique{i}" for i in range(PASSAGES)]
    labels = np.arange(PASSAGES, dtype=np.uint64) + np.uint64(1 << 33)
    questions = [" ".join(texts[i].split()[:4]) for i in range(0, PASSAGES, 29)]
    return texts, labels, dict(zip(labels.tolist(), texts, strict=True)), questions


def _search(index, embedder, by_label, question, memo, caches=(), **params):
    return index.search(question, 10, embedder=embedder,
                        texts=lambda ls: [by_label[int(x)] for x in ls],
                        params=SearchParams(**params), vector_caches=caches, score_memo=memo)


@pytest.mark.parametrize("params", [{}, {"recall_target": 1.0}])
def test_a_repeated_query_recomputes_nothing_and_returns_the_same_hits(corpus, params):
    texts, labels, by_label, questions = corpus
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    memo = QueryScoreMemo()
    for question in questions:
        first = _search(index, embedder, by_label, question, memo, **params)
        again = _search(index, embedder, by_label, question, memo, **params)
        assert first.stats.passages_recomputed > 0 and first.stats.memo_hits == 0
        assert again.stats.passages_recomputed == 0
        assert again.stats.memo_hits == again.stats.reranked == first.stats.reranked
        assert again.stats.rerank_stop == first.stats.rerank_stop
        assert [(h.label, h.score) for h in again.hits] == [(h.label, h.score)
                                                            for h in first.hits]


def test_a_search_cut_by_its_deadline_leaves_its_scores_for_the_retry(corpus):
    texts, labels, by_label, questions = corpus
    embedder = SlowHashingEmbedder(1.5)
    index = Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)
    memo = QueryScoreMemo()
    fetch = lambda ls: [by_label[int(x)] for x in ls]  # noqa: E731
    exhaustive = SearchParams(recall_target=1.0)  # several batches: the cut comes between
    question = HashingEmbedder().embed_query(questions[0])  # the slow calls are recomputes
    with pytest.raises(DeadlineExceeded, match="recompute"):
        index.search(question, 10, embedder=embedder, texts=fetch, params=exhaustive,
                     score_memo=memo, deadline=time.monotonic() + 1.0)
    embedder.seconds = 0.0
    retry = index.search(question, 10, embedder=embedder, texts=fetch, params=exhaustive,
                         score_memo=memo)
    uncut = index.search(question, 10, embedder=embedder, texts=fetch, params=exhaustive)
    assert retry.stats.memo_hits == exhaustive.batch_size
    assert retry.stats.passages_recomputed == (uncut.stats.passages_recomputed
                                               - exhaustive.batch_size)
    assert [(h.label, h.score) for h in retry.hits] == [(h.label, h.score) for h in uncut.hits]


def test_the_memo_answers_before_the_learned_cache(corpus):
    """With both, the repeat is served by the memo; the learned cache is not consulted for
    what the memo already holds, so the stats say which cache did the work."""
    texts, labels, by_label, questions = corpus
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    learned = LearnedCache(fingerprint_digest=index.fingerprint.digest(), dim=embedder.dim,
                           budget_bytes=PASSAGES * entry_bytes(embedder.dim))
    memo = QueryScoreMemo()
    first = _search(index, embedder, by_label, questions[0], memo, caches=[learned])
    again = _search(index, embedder, by_label, questions[0], memo, caches=[learned])
    assert len(learned) > 0
    assert (again.stats.memo_hits, again.stats.cache_hits) == (first.stats.reranked, 0)


def test_scores_of_another_fingerprint_never_hit(corpus):
    texts, labels, by_label, questions = corpus
    fp32, bf16 = HashingEmbedder(), Bf16HashingEmbedder()
    memo = QueryScoreMemo()
    for_fp32 = Index.build(texts, labels, embedder=fp32, params=SMALL)
    for_bf16 = Index.build(texts, labels, embedder=bf16, params=SMALL)
    query = fp32.embed_query(questions[0])
    assert np.array_equal(query, bf16.embed_query(questions[0]))  # same vector, other model
    first = _search(for_fp32, fp32, by_label, query, memo)
    other = _search(for_bf16, bf16, by_label, query, memo)
    assert first.stats.reranked > 0
    assert other.stats.memo_hits == 0
    assert other.stats.passages_recomputed == first.stats.passages_recomputed


@pytest.mark.parametrize("budget_queries", [0, 1, 3])
def test_the_memo_never_exceeds_its_budget_and_drops_the_least_recent_query(corpus,
                                                                           budget_queries):
    texts, labels, by_label, questions = corpus
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    # Room for ``budget_queries`` searches that scored the whole pool of 80.
    memo = QueryScoreMemo(budget_bytes=budget_queries * (QUERY_OVERHEAD_BYTES + 80 * SCORE_BYTES))
    for question in questions:
        _search(index, embedder, by_label, question, memo, recall_target=1.0)
        assert memo.used_bytes <= memo.budget_bytes
        assert len(memo) <= budget_queries
    served = [_search(index, embedder, by_label, q, memo, recall_target=1.0).stats.memo_hits
              for q in reversed(questions[-budget_queries - 1:])]
    # The most recent ones are held; the one just before them was dropped first.
    assert served == [80] * budget_queries + [0]


def test_offering_the_same_scores_again_costs_nothing_more():
    memo = QueryScoreMemo(budget_bytes=1 << 20)
    query = np.ones(8, dtype=np.float32) / np.sqrt(8)
    memo.remember(query, np.array([3, 1, 2], dtype=np.uint64), np.array([.3, .1, .2]), DIGEST)
    used = memo.used_bytes
    memo.remember(query, np.array([2, 3], dtype=np.uint64), np.array([.2, .3]), DIGEST)
    assert memo.used_bytes == used == QUERY_OVERHEAD_BYTES + 3 * SCORE_BYTES
    memo.remember(query, np.array([9], dtype=np.uint64), np.array([.9]), DIGEST)
    hit, scores = memo.lookup(query, np.array([9, 1, 7, 3], dtype=np.uint64), DIGEST)
    assert hit.tolist() == [True, True, False, True]
    np.testing.assert_allclose(scores, [.9, .1, .3])





@pytest.fixture
def node(tmp_path):
    node = Node.open(tmp_path / "data")
    node.indexes = IndexManager(node.store, embedder_factory=lambda info: HashingEmbedder())
    node.create_collection("c")
    node.upsert_documents("c", topic_documents(MEMO_TOPICS))
    node.build("c")
    with node:
        yield node


QUESTION = "rocket orbit planet comet"
EVERY_CANDIDATE = {"recall_target": 1.0}


def test_a_node_reports_memo_hits_and_they_cross_the_wire(node):
    first = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    again = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    assert first.stats.passages_recomputed > 0
    assert again.stats.passages_recomputed == 0 and again.stats.memo_hits > 0
    assert [h.document_id for h in again.hits] == [h.document_id for h in first.hits]
    received = wire.search_result_from_wire(wire.search_result_to_wire(again))
    assert received.stats.memo_hits == again.stats.memo_hits


def test_a_deleted_passage_is_not_returned_from_the_memo(node):
    first = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    gone = first.hits[0].document_id
    node.delete_documents("c", [gone])
    before_build = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    assert before_build.stats.memo_hits > 0
    assert gone not in [h.document_id for h in before_build.hits]
    node.build("c")  # a new generation: the memoised scores of the others stay valid
    after_build = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    assert after_build.stats.memo_hits > 0 and after_build.stats.passages_recomputed == 0
    assert gone not in [h.document_id for h in after_build.hits]
    assert [h.document_id for h in after_build.hits] == [h.document_id
                                                         for h in before_build.hits]


def test_the_memo_is_dropped_with_the_collection(node):
    node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    node.drop_collection("c")
    node.create_collection("c")
    node.upsert_documents("c", topic_documents(MEMO_TOPICS))
    node.build("c")
    again = node.search("c", QUESTION, top_k=3, params=EVERY_CANDIDATE)
    assert again.stats.memo_hits == 0 and again.stats.passages_recomputed > 0
