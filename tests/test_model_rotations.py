"""A collection too small for a rotation of its own uses the one shipped for its model:
better codes at no bytes in the bundle, and a bundle that names a rotation the reader lacks
is refused rather than read with another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from meshdex.index import model_rotations, rotation_layout
from meshdex.index.chunking import ChunkingParams, chunk_text
from meshdex.index.codes import ProductQuantizer, adc_scores, rotation_min_vectors
from meshdex.index.engine import Index
from meshdex.index.errors import BundleCorrupt, InvalidArgument
from meshdex.index.model_rotations import ModelRotation
from meshdex.index.params import RECALL_TARGETS, SearchParams

SAMPLE = Path(__file__).resolve().parents[1] / "node" / "sample" / "python-tutorial"
DIM = 64


@pytest.fixture(scope="module")
def correlated() -> np.ndarray:
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(DIM, DIM)) * np.linspace(3.0, 0.1, DIM)[None, :]
    points = rng.normal(size=(3000, DIM)) @ mixing
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def shipped(correlated) -> ModelRotation:
    """A rotation as one shipped for a 64-dimensional model would be (learnt on other data)."""
    learnt = ProductQuantizer.train(correlated[1000:], subvectors=16, bits=4, sample=2000,
                                    seed=1, rotation_iterations=3)
    data = rotation_layout.to_bytes(learnt.rotation)
    return ModelRotation(model_hash="test", digest=b"\x07" * model_rotations.DIGEST_BYTES,
                         rotation=rotation_layout.from_bytes(data, DIM))


def test_a_small_collection_names_the_model_rotation_instead_of_storing_it(correlated,
                                                                           shipped,
                                                                           monkeypatch):
    small = correlated[: rotation_min_vectors(DIM, 8) - 1]
    quantizer = ProductQuantizer.train(small, subvectors=16, bits=4, sample=1000, seed=0,
                                       rotation_iterations=5, model_rotation=shipped)
    assert quantizer.model_rotation is shipped
    section = quantizer.to_bytes()
    plain = ProductQuantizer.train(small, subvectors=16, bits=4, sample=1000, seed=0)
    assert len(section) == len(plain.to_bytes()) + model_rotations.DIGEST_BYTES
    monkeypatch.setattr(model_rotations, "_installed", lambda: {"test": shipped})
    read = ProductQuantizer.from_bytes(section, subvectors=16, bits=4, dim=DIM)
    np.testing.assert_array_equal(read.rotation, shipped.rotation)
    np.testing.assert_array_equal(read.byte_table(small[3]), quantizer.byte_table(small[3]))
    assert read.to_bytes() == section


def test_a_collection_big_enough_learns_its_own_and_plain_pq_stays_plain(correlated, shipped):
    big = ProductQuantizer.train(correlated[:512], subvectors=16, bits=4, sample=1000, seed=0,
                                 rotation_iterations=1, model_rotation=shipped)
    assert big.model_rotation is None and big.rotation is not None
    plain = ProductQuantizer.train(correlated[:100], subvectors=16, bits=4, sample=1000,
                                   seed=0, rotation_iterations=0, model_rotation=shipped)
    assert plain.rotation is None and plain.model_rotation is None


def test_a_codebook_naming_a_rotation_not_shipped_here_is_refused(correlated, shipped):
    quantizer = ProductQuantizer.train(correlated[:200], subvectors=16, bits=4, sample=1000,
                                       seed=0, rotation_iterations=1, model_rotation=shipped)
    with pytest.raises(InvalidArgument, match="does not ship") as refused:
        ProductQuantizer.from_bytes(quantizer.to_bytes(), subvectors=16, bits=4, dim=DIM)
    assert "rebuild" in refused.value.hint


def test_the_shipped_rotation_is_orthogonal_and_named_by_its_file_digest(collection_embedder):
    shipped = model_rotations.for_model(collection_embedder.fingerprint.model_hash, 384)
    assert shipped is not None
    np.testing.assert_allclose(shipped.rotation @ shipped.rotation.T, np.eye(384), atol=0.02)
    assert model_rotations.by_digest(shipped.digest) is shipped
    assert model_rotations.for_model(collection_embedder.fingerprint.model_hash, 768) is None
    assert model_rotations.for_model("0" * 64, 384) is None


@pytest.fixture(scope="module")
def tutorial(collection_embedder) -> tuple[list[str], np.ndarray]:
    """The sample tutorial's 275 passages and their embeddings by the packaged model."""
    texts = [p for path in sorted(SAMPLE.glob("*.rst"))
             for p in chunk_text(path.read_text(), ChunkingParams())]
    return texts, np.asarray(collection_embedder.embed_documents(texts), dtype=np.float32)


class StoredVectors:
    """The packaged model's identity, answering recomputes from vectors it computed already
    (what a search recomputes is counted by the engine's stats either way)."""

    def __init__(self, real, texts: list[str], vectors: np.ndarray) -> None:
        self.fingerprint, self.dim = real.fingerprint, real.dim
        self.model_id, self.model_hash = real.model_id, real.model_hash
        self._rows = {text: row for row, text in enumerate(texts)}
        self._vectors = vectors

    def embed_documents(self, texts):
        return self._vectors[[self._rows[text] for text in texts]]


def test_each_kind_of_codes_has_its_default_recall_target(correlated, shipped):
    own = ProductQuantizer.train(correlated[:512], subvectors=16, bits=4, sample=1000, seed=0,
                                 rotation_iterations=1)
    small = ProductQuantizer.train(correlated[:100], subvectors=16, bits=4, sample=1000, seed=0,
                                   rotation_iterations=1, model_rotation=shipped)
    plain = ProductQuantizer.train(correlated[:100], subvectors=16, bits=4, sample=1000, seed=0)
    assert [q.default_recall_target for q in (own, small, plain)] == [
        RECALL_TARGETS["learnt rotation"], RECALL_TARGETS["model rotation"],
        RECALL_TARGETS["no rotation"]]
    assert RECALL_TARGETS["learnt rotation"] < RECALL_TARGETS["model rotation"] < (
        RECALL_TARGETS["no rotation"])


@pytest.mark.model
def test_a_small_collection_scores_more_of_its_pool_than_its_codes_alone_would_stop_at(
        collection_embedder, tutorial):
    """Codes under the shipped rotation are coarser than a learnt one's: a search naming no
    recall_target gets the model rotation's (bench/results/small_collections.md: recall@3
    0.944-0.977 at the learnt rotation's 0.55, 0.974-0.983 at 0.8)."""
    texts, vectors = tutorial
    labels = np.arange(1, len(texts) + 1, dtype=np.uint64)
    stored = StoredVectors(collection_embedder, texts, vectors)
    built = Index.build(texts, labels, embedder=stored, embeddings=vectors)
    assert built.recall_target(SearchParams()) == RECALL_TARGETS["model rotation"]
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    questions = ["How do I use Python as a calculator?", "What is a list comprehension?",
                 "How do I read a file line by line?", "How are exceptions handled?",
                 "What does the for statement do?", "How do I define a class?",
                 "What is a virtual environment?", "How do I format strings?"]

    def recomputed(params: SearchParams) -> list[int]:
        return [built.search(collection_embedder.embed_query(q), 10, embedder=stored,
                             texts=lambda wanted: [by_label[int(x)] for x in wanted],
                             params=params).stats.passages_recomputed for q in questions]

    default = recomputed(SearchParams())
    assert default == recomputed(SearchParams(recall_target=RECALL_TARGETS["model rotation"]))
    coarse = recomputed(SearchParams(recall_target=RECALL_TARGETS["learnt rotation"]))
    assert all(d >= c for d, c in zip(default, coarse, strict=True))
    assert sum(default) > sum(coarse)


@pytest.mark.model
def test_the_shipped_rotation_gives_a_small_real_collection_closer_code_scores(
        collection_embedder, tutorial):
    """The sample tutorial (275 passages), each passage a stand-in query: its exact top 3
    neighbours get code scores nearer their exact ones (measured: error 0.075 against 0.104
    without a rotation), which is what lets re-ranking stop early, and are found among the
    best 8 by code score at least as often."""
    texts, vectors = tutorial
    shipped = model_rotations.for_model(collection_embedder.fingerprint.model_hash, 384)

    def error_and_found(model_rotation: ModelRotation | None) -> tuple[float, float]:
        quantizer = ProductQuantizer.train(vectors, subvectors=64, bits=4, sample=8192, seed=0,
                                           rotation_iterations=10,
                                           model_rotation=model_rotation)
        codes = quantizer.encode(vectors)
        errors, found = [], 0
        for query in range(len(texts)):
            exact = vectors @ vectors[query]
            approx = adc_scores(quantizer.byte_table(vectors[query]), codes)
            exact[query] = approx[query] = -np.inf
            top = np.argsort(-exact)[:3]
            errors.append(np.abs(exact[top] - approx[top]).mean())
            found += np.isin(top, np.argsort(-approx)[:8]).sum()
        return float(np.mean(errors)), found / (3 * len(texts))

    (error, found), (plain_error, plain_found) = error_and_found(shipped), error_and_found(None)
    assert error < 0.85 * plain_error, (error, plain_error)
    assert found >= plain_found, (found, plain_found)


@pytest.mark.model
def test_an_index_built_with_the_model_rotation_reopens_only_where_it_is_shipped(
        collection_embedder):
    texts = chunk_text((SAMPLE / "introduction.rst").read_text(), ChunkingParams())
    labels = np.arange(1, len(texts) + 1, dtype=np.uint64)
    built = Index.build(texts, labels, embedder=collection_embedder)
    sections = built.to_sections()
    shipped = model_rotations.for_model(collection_embedder.fingerprint.model_hash, 384)
    assert sections["codebook"].endswith(shipped.digest)

    def reopen(codebook: bytes) -> Index:
        return Index.from_sections({**sections, "codebook": codebook},
                                   fingerprint=built.fingerprint, params=built.params,
                                   rerank_bound=built.rerank_bound)

    by_label = dict(zip(labels.tolist(), texts, strict=True))

    def top(index: Index) -> list[int]:
        result = index.search("How do I use Python as a calculator?", 3,
                              embedder=collection_embedder,
                              texts=lambda wanted: [by_label[int(x)] for x in wanted])
        return [hit.label for hit in result.hits]

    assert top(reopen(sections["codebook"])) == top(built)
    other = sections["codebook"][:-1] + bytes([sections["codebook"][-1] ^ 0xFF])
    with pytest.raises(BundleCorrupt, match="does not ship"):
        reopen(other)
