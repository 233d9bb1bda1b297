"""Adaptive re-ranking: stop when the rest cannot enter the top k, on a bound calibrated at
build time that travels in the bundle manifest and is chosen per search by ``recall_target``."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest
from fakes import HashingEmbedder
from meshdex.index.bundle_manifest import (
    BundleManifest,
    HlcStamp,
    StoreState,
    manifest_from_bytes,
    manifest_to_bytes,
)
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.engine import Index
from meshdex.index.errors import BundleCorrupt, InvalidArgument
from meshdex.index.params import BuildParams, SearchParams
from meshdex.index.rerank_bound import RerankBound
from meshdex.node import wire
from meshdex.proto.meshdex.v1 import node_pb2 as pb

PASSAGES = 600
WORDS = [f"word{i}" for i in range(400)]
SMALL = BuildParams(pq_subvectors=16, pq_bits=4, cache_budget_nodes=0)
SIGN_DIM = 64
SIGN_VALUE = 1 / 8  # ±1/8 in 64 dimensions: unit norm, exact in fp16


class SignEmbedder(HashingEmbedder):
    """Every coordinate is ±1/8, from a hash of the text: with 4 coordinates per PQ slice a
    slice has at most 16 patterns, so 16 centroids reproduce every passage exactly and the
    code score equals the exact score (a planted case where the bound is exact: zero)."""

    def __init__(self) -> None:
        super().__init__(dim=SIGN_DIM)

    def vector(self, text: str) -> np.ndarray:
        bits = np.unpackbits(np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint8))
        return np.where(bits[:SIGN_DIM] == 1, SIGN_VALUE, -SIGN_VALUE).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(WORDS, 12)) + f" unique{i}" for i in range(PASSAGES)]
    labels = np.arange(PASSAGES, dtype=np.uint64) + np.uint64(1 << 33)
    return texts, labels, dict(zip(labels.tolist(), texts, strict=True))


@pytest.fixture(scope="module")
def built(corpus):
    texts, labels, _ = corpus
    return Index.build(texts, labels, embedder=HashingEmbedder(), params=SMALL)


def _fetch(by_label):
    return lambda labels: [by_label[int(label)] for label in labels]


def _queries(texts):
    return [" ".join(texts[i].split()[:4]) for i in range(0, PASSAGES, 41)]


@pytest.mark.parametrize("recall_target", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_adaptive_stopping_never_returns_fewer_than_k(corpus, built, recall_target, k):
    texts, _, by_label = corpus
    for query in _queries(texts):
        result = built.search(query, k, embedder=HashingEmbedder(), texts=_fetch(by_label),
                              params=SearchParams(recall_target=recall_target))
        assert len(result.hits) == k
        assert result.stats.reranked >= k


def test_equals_the_fixed_rerank_where_the_bound_is_exact(corpus):
    texts, labels, by_label = corpus
    embedder = SignEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    assert index.rerank_bound is not None
    assert index.code_score_floor(0.5, 0.99) == pytest.approx(0.5, abs=1e-6)
    fixed = SearchParams(recall_target=1.0, recompute_fraction=1.0)
    adaptive = dataclasses.replace(fixed, recall_target=0.99)
    stops, saved = set(), 0
    for query in _queries(texts):
        full = index.search(query, 5, embedder=embedder, texts=_fetch(by_label), params=fixed)
        early = index.search(query, 5, embedder=embedder, texts=_fetch(by_label),
                             params=adaptive)
        assert [h.score for h in early.hits] == pytest.approx([h.score for h in full.hits])
        stops.add(early.stats.rerank_stop)
        saved += full.stats.passages_recomputed - early.stats.passages_recomputed
    assert "bound" in stops and saved > 0


def test_a_higher_recall_target_never_recomputes_less(corpus, built):
    texts, _, by_label = corpus
    targets = [0.5, 0.8, 0.9, 0.95, 0.99, 1.0]
    for query in _queries(texts):
        counts = [
            built.search(query, 3, embedder=HashingEmbedder(), texts=_fetch(by_label),
                         params=SearchParams(recall_target=t)).stats.passages_recomputed
            for t in targets
        ]
        assert counts == sorted(counts)
        assert counts[-1] == 80  # target 1.0 re-ranks up to the ceiling: the pool, ef=80


def test_the_calibrated_margin_covers_held_out_queries(corpus, built):
    """On queries the calibration never saw, few of the exact top-10 passages fall under the
    floor their own exact score sets: within 2× of the 1 - target miss rate (stand-in
    queries are passages, not questions, so the calibration is close, not exact)."""
    texts, _, _ = corpus
    embedder = HashingEmbedder()
    exact_vectors = embedder.embed_documents(texts)
    approx_vectors = built._quantizer.reconstruct(built._codes)
    rng = np.random.default_rng(3)
    queries = embedder.embed_documents(
        [" ".join(rng.choice(WORDS, 5)) for _ in range(200)])
    exact = queries @ exact_vectors.T
    top = np.argsort(-exact, axis=1)[:, :10]
    scores = np.take_along_axis(exact, top, axis=1)
    approx = np.einsum("qd,qnd->qn", queries, approx_vectors[top])
    for target in (0.8, 0.9, 0.95):
        # A passage scoring exactly the k-th best would be skipped: its code score is at or
        # below the floor computed from its own exact score.
        floor = np.vectorize(lambda s, t=target: built.code_score_floor(float(s), t))(scores)
        assert np.mean(approx <= floor) <= 2 * (1 - target)


def test_an_index_without_a_bound_reranks_up_to_the_ceiling(corpus, built):
    texts, _, by_label = corpus
    sections = built.to_sections()
    old = Index.from_sections(sections, fingerprint=built.fingerprint, params=built.params)
    assert old.rerank_bound is None and math.isinf(old.code_score_floor(0.5, 0.9))
    result = old.search(texts[5], 3, embedder=HashingEmbedder(), texts=_fetch(by_label))
    assert result.stats.passages_recomputed == 80 and result.stats.rerank_stop == "pool"


def _manifest(bound: RerankBound | None) -> BundleManifest:
    return BundleManifest(
        bundle_id="1b4e28ba-2fa1-11d2-883f-0016d3cca427", collection="c", generation=1,
        parent_generation=None, device_id="dev", created_at=HlcStamp(physical_ms=1),
        store_state=StoreState(), build_params=SMALL.to_dict(),
        fingerprint=EmbeddingFingerprint(model_id="m", model_hash="h", precision="fp32",
                                         max_seq_length=1, pooling="mean", normalize=True,
                                         dim=64),
        rerank_bound=bound,
    )


def test_the_bound_travels_in_the_manifest_and_reopens_the_same_search(corpus, built):
    texts, _, by_label = corpus
    back = manifest_from_bytes(manifest_to_bytes(_manifest(built.rerank_bound)))
    assert back.rerank_bound == built.rerank_bound
    reopened = Index.from_sections(built.to_sections(), fingerprint=built.fingerprint,
                                   params=built.params, rerank_bound=back.rerank_bound)
    for query in _queries(texts)[:4]:
        mine, theirs = (
            index.search(query, 3, embedder=HashingEmbedder(), texts=_fetch(by_label))
            for index in (built, reopened)
        )
        assert mine.hits == theirs.hits
        assert mine.stats.passages_recomputed == theirs.stats.passages_recomputed


@pytest.mark.parametrize("levels, errors", [
    ((0.5, 0.9), (0.2, 0.1)),  # errors decrease
    ((0.9, 0.5), (0.1, 0.2)),  # levels out of order
    ((0.5,), (0.1, 0.2)),  # one error too many
    ((0.5, 1.5), (0.1, 0.2)),  # a level above 1
    ((0.5, 0.9), (0.1, float("nan"))),
])
def test_a_malformed_bound_in_a_manifest_is_corrupt(levels, errors):
    good = RerankBound(levels=(0.5, 0.9), score_errors=(0.1, 0.2), score_slope=0.1,
                       sample_queries=8, covered_nodes=100)
    message = _manifest(good).to_proto()
    del message.rerank_bound.levels[:]
    del message.rerank_bound.score_errors[:]
    message.rerank_bound.levels.extend(levels)
    message.rerank_bound.score_errors.extend(errors)
    with pytest.raises(BundleCorrupt, match="re-rank bound"):
        manifest_from_bytes(message.SerializeToString())


@pytest.mark.parametrize("field, params_json, expected", [
    (0.0, "", None),
    (0.8, "", {"recall_target": 0.8}),
    (0.8, '{"ef": 40}', {"ef": 40, "recall_target": 0.8}),
    (0.0, '{"recall_target": 0.7}', {"recall_target": 0.7}),
])
def test_the_grpc_recall_target_field_joins_the_search_params(field, params_json, expected):
    call = wire.search_request_from_wire(pb.SearchRequest(
        collection="c", query="q", recall_target=field, params_json=params_json))
    assert call.params == expected


def test_recall_target_given_twice_over_grpc_is_refused():
    with pytest.raises(InvalidArgument, match="both"):
        wire.search_request_from_wire(pb.SearchRequest(
            collection="c", query="q", recall_target=0.8, params_json='{"recall_target": 0.9}'))


@pytest.mark.parametrize("value", [0.0, -0.1, 1.01])
def test_a_recall_target_out_of_range_is_refused(value):
    with pytest.raises(InvalidArgument, match="recall_target"):
        SearchParams(recall_target=value)


class _HeldVectors:
    """A vector cache that holds the exact embeddings of chosen passages and learns nothing
    (what the learned cache holds after earlier searches)."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self.vectors = vectors

    def lookup(self, labels: np.ndarray, fingerprint_digest: str) -> tuple[np.ndarray, np.ndarray]:
        hit = np.array([int(label) in self.vectors for label in labels], dtype=bool)
        held = [self.vectors[int(label)] for label in labels[hit]]
        return hit, np.array(held, dtype=np.float32).reshape(len(held), -1)

    def remember(self, labels: np.ndarray, vectors: np.ndarray, fingerprint_digest: str) -> None:
        pass


@pytest.mark.parametrize("built_passages", [2, 12, 40])
def test_passages_inserted_after_the_build_are_found_though_a_cached_one_scores_first(
        built_passages):
    """The bound is measured on the codes of the build; a passage inserted later is coded by
    centroids it never shaped, so the bound does not cover it. Searched by its own text, with
    the similar older passage it extends cached (scored for free first), it must be the top
    hit."""
    rng = np.random.default_rng(11)
    texts = [" ".join(rng.choice(WORDS, 12)) for _ in range(built_passages)]
    labels = np.arange(built_passages, dtype=np.uint64) + np.uint64(1 << 33)
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    found = []
    for n in range(8):
        older = int(labels[n % built_passages])
        new_text, new_label = by_label[older] + f" and more{n}", np.uint64(n + 1)
        index.add([new_text], np.array([new_label]), embedder=embedder)
        by_label[int(new_label)] = new_text
        cached = _HeldVectors({older: embedder.embed_documents([by_label[older]])[0]})
        result = index.search(new_text, 1, embedder=embedder, texts=_fetch(by_label),
                              vector_caches=[cached])
        found.append([hit.label for hit in result.hits] == [int(new_label)])
    assert all(found), found
    assert index.rerank_bound is not None and index.rerank_bound.covered_nodes == built_passages


def test_after_a_delta_build_the_bound_still_stops_early_and_scores_every_inserted_passage(
        corpus):
    texts, labels, by_label = corpus
    embedder = HashingEmbedder()
    index = Index.build(texts, labels, embedder=embedder, params=SMALL)
    added = [f"inserted note {n} " + texts[7] for n in range(3)]  # candidates of the query
    new_labels = np.arange(1, 4, dtype=np.uint64)
    index.add(added, new_labels, embedder=embedder)
    lookup = {**by_label, **dict(zip(new_labels.tolist(), added, strict=True))}
    scored: list[list[int]] = []

    def fetch(wanted: np.ndarray) -> list[str]:
        scored.append([int(label) for label in wanted])
        return [lookup[int(label)] for label in wanted]

    result = index.search(texts[7], 3, embedder=embedder, texts=fetch)
    assert result.stats.rerank_stop == "bound" and result.stats.passages_recomputed < 80
    assert {1, 2, 3} <= {label for batch in scored for label in batch}, "inserted not scored"
    assert index.rerank_bound.covered_nodes == PASSAGES


def test_a_bound_that_does_not_say_which_nodes_it_covers_is_not_used(corpus, built):
    texts, _, by_label = corpus
    unknown = dataclasses.replace(built.rerank_bound, covered_nodes=0)
    back = manifest_from_bytes(manifest_to_bytes(_manifest(unknown)))
    old = Index.from_sections(built.to_sections(), fingerprint=built.fingerprint,
                              params=built.params, rerank_bound=back.rerank_bound)
    assert math.isinf(old.code_score_floor(0.5, 0.9))
    result = old.search(texts[5], 3, embedder=HashingEmbedder(), texts=_fetch(by_label))
    assert result.stats.passages_recomputed == 80 and result.stats.rerank_stop == "pool"
