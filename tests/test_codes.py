"""Product-quantisation codes give similarities close to the exact ones, at a few bytes each."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import HashingEmbedder
from meshdex.index import codes as codes_module
from meshdex.index.codes import (
    BYTE_VALUES,
    SCAN_CHUNK,
    SCAN_PARALLEL_MIN,
    ProductQuantizer,
    adc_scores,
    rotation_min_vectors,
    scan_layout,
    scan_scores,
)
from meshdex.index.engine import Index
from meshdex.index.errors import InvalidArgument
from meshdex.index.params import BuildParams

NOTES_PARAMS = BuildParams(pq_subvectors=16, cache_budget_nodes=0)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(30, 64))
    points = centres[rng.integers(0, 30, 2000)] + 0.6 * rng.normal(size=(2000, 64))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("subvectors", "bits", "code_bytes"), [(16, 4, 8), (16, 8, 16), (32, 4, 16)]
)
def test_adc_scores_track_exact_similarity(vectors, subvectors, bits, code_bytes):
    quantizer = ProductQuantizer.train(vectors, subvectors=subvectors, bits=bits, sample=1000,
                                       seed=0)
    codes = quantizer.encode(vectors)
    assert codes.shape == (len(vectors), code_bytes) and codes.dtype == np.uint8
    query = vectors[5]
    approx = adc_scores(quantizer.byte_table(query), codes)
    exact = vectors @ query
    assert np.corrcoef(approx, exact)[0, 1] > 0.9
    # ADC equals the dot product with the reconstructed vectors (the table is exact).
    np.testing.assert_allclose(approx, quantizer.reconstruct(codes) @ query, atol=1e-4)
    # The true nearest neighbours rank near the top by code similarity.
    top_exact = set(np.argsort(-exact)[1:11].tolist())
    top_approx = set(np.argsort(-approx)[:50].tolist())
    assert len(top_exact & top_approx) >= 8


def test_codebook_bytes_round_trip(vectors):
    quantizer = ProductQuantizer.train(vectors, subvectors=16, bits=4, sample=500, seed=0)
    loaded = ProductQuantizer.from_bytes(memoryview(quantizer.to_bytes()), subvectors=16, bits=4,
                                         dim=64)
    assert np.array_equal(loaded.encode(vectors), quantizer.encode(vectors))


def test_fewer_vectors_than_centroids_still_encodes():
    vectors = np.eye(8, dtype=np.float32)[:5]
    quantizer = ProductQuantizer.train(vectors, subvectors=4, bits=8, sample=100, seed=0)
    codes = quantizer.encode(vectors)
    np.testing.assert_allclose(quantizer.reconstruct(codes), vectors, atol=1e-3)


@pytest.mark.parametrize(("subvectors", "size"), [(5, 1000), (16, 10)])
def test_bad_layouts_are_refused(vectors, subvectors, size):
    with pytest.raises(InvalidArgument):
        if size == 1000:
            ProductQuantizer.train(vectors, subvectors=subvectors, bits=4, sample=100, seed=0)
        else:
            ProductQuantizer.from_bytes(b"\0" * size, subvectors=subvectors, bits=4, dim=64)


# --- the learnt rotation (OPQ), the codebook versions and the flat scan ----------------------


@pytest.fixture(scope="module")
def correlated() -> np.ndarray:
    """Vectors whose variance sits in a few directions spread over every coordinate, as in
    sentence embeddings: plain PQ slices them badly, a rotation can even them out."""
    rng = np.random.default_rng(5)
    latent = rng.normal(size=(3000, 12)) * np.linspace(3.0, 0.5, 12)
    points = latent @ rng.normal(size=(12, 64)) + 0.3 * rng.normal(size=(3000, 64))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def _top_share(quantizer: ProductQuantizer, vectors: np.ndarray, reranked: int) -> float:
    """Share of each stand-in query's exact top 3 found among its best ``reranked`` by code."""
    codes = quantizer.encode(vectors)
    found = 0
    queries = range(0, 3000, 60)
    for q in queries:
        exact = vectors @ vectors[q]
        exact[q] = -np.inf
        approx = adc_scores(quantizer.byte_table(vectors[q]), codes)
        approx[q] = -np.inf
        found += len(set(np.argsort(-exact)[:3]) & set(np.argsort(-approx)[:reranked]))
    return found / (3 * len(queries))


def test_a_learnt_rotation_ranks_the_true_neighbours_higher(correlated):
    plain = ProductQuantizer.train(correlated, subvectors=16, bits=4, sample=3000, seed=0)
    rotated = ProductQuantizer.train(correlated, subvectors=16, bits=4, sample=3000, seed=0,
                                     rotation_iterations=8)
    assert plain.rotation is None and rotated.rotation is not None
    assert _top_share(rotated, correlated, 10) >= _top_share(plain, correlated, 10) + 0.05
    # Orthogonal up to the stored int8 rounding: similarities are preserved.
    gram = rotated.rotation.T @ rotated.rotation
    np.testing.assert_allclose(gram, np.eye(64), atol=0.02)
    # ADC is still the dot product with the reconstruction, which is back in embedding space.
    codes = rotated.encode(correlated[:50])
    np.testing.assert_allclose(adc_scores(rotated.byte_table(correlated[7]), codes),
                               rotated.reconstruct(codes) @ correlated[7], atol=1e-4)


def test_the_rotation_round_trips_through_the_codebook_section(correlated):
    quantizer = ProductQuantizer.train(correlated, subvectors=16, bits=4, sample=1000, seed=0,
                                       rotation_iterations=3)
    data = quantizer.to_bytes()
    centroid_bytes = 16 * 16 * 4 * 2
    assert len(data) == 8 + centroid_bytes + 64 * 64 + 64 * 4  # header, centroids, int8 + scales
    loaded = ProductQuantizer.from_bytes(memoryview(data), subvectors=16, bits=4, dim=64)
    assert np.array_equal(loaded.encode(correlated), quantizer.encode(correlated))
    np.testing.assert_array_equal(loaded.byte_table(correlated[3]),
                                  quantizer.byte_table(correlated[3]))


def test_a_codebook_from_before_the_rotation_still_loads(correlated):
    """Version 0: the float16 centroids alone, no header (every bundle built before OPQ)."""
    quantizer = ProductQuantizer.train(correlated, subvectors=16, bits=4, sample=1000, seed=0)
    legacy = quantizer.centroids.astype("<f2").tobytes()
    loaded = ProductQuantizer.from_bytes(legacy, subvectors=16, bits=4, dim=64)
    assert loaded.rotation is None
    assert np.array_equal(loaded.encode(correlated), quantizer.encode(correlated))


@pytest.mark.parametrize(
    "corrupt",
    [lambda d: b"XXXX" + d[4:], lambda d: d[:4] + b"\x09" + d[5:], lambda d: d[:-1]],
    ids=["magic", "version", "truncated"],
)
def test_a_codebook_of_another_version_or_size_is_refused(correlated, corrupt):
    quantizer = ProductQuantizer.train(correlated, subvectors=16, bits=4, sample=1000, seed=0,
                                       rotation_iterations=1)
    with pytest.raises(InvalidArgument, match="codebook"):
        ProductQuantizer.from_bytes(corrupt(quantizer.to_bytes()), subvectors=16, bits=4, dim=64)


def test_a_collection_too_small_for_its_rotation_gets_none(correlated):
    """Below dim² / code_bytes vectors the int8 rotation would outweigh every code."""
    assert rotation_min_vectors(64, 8) == 512
    small = ProductQuantizer.train(correlated[:511], subvectors=16, bits=4, sample=1000, seed=0,
                                   rotation_iterations=5)
    big = ProductQuantizer.train(correlated[:512], subvectors=16, bits=4, sample=1000, seed=0,
                                 rotation_iterations=1)
    assert small.rotation is None and big.rotation is not None


@pytest.mark.parametrize(("subvectors", "bits"), [(16, 4), (5, 8), (6, 4)])
def test_the_flat_scan_gives_the_adc_scores(vectors, subvectors, bits):
    dim = 64 if subvectors == 16 else 60  # 5 × 8 and 6 × 4 bits: an odd number of code bytes
    points = vectors[:, :dim]
    quantizer = ProductQuantizer.train(points, subvectors=subvectors, bits=bits, sample=500,
                                       seed=0)
    codes = quantizer.encode(points)
    table = quantizer.byte_table(points[9])
    np.testing.assert_allclose(scan_scores(table, scan_layout(codes)), adc_scores(table, codes),
                               atol=1e-5)


@pytest.mark.parametrize("count", [0, 2 * SCAN_CHUNK + 7])
def test_the_flat_scan_scores_every_chunk_of_a_large_collection(count):
    """Codes past the first gather chunk, the last one partial, score as ADC scores them;
    no codes give no scores."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, BYTE_VALUES, size=(count, 5), dtype=np.uint8)
    table = rng.normal(size=(5, BYTE_VALUES)).astype(np.float32)
    np.testing.assert_allclose(scan_scores(table, scan_layout(codes)), adc_scores(table, codes),
                               atol=1e-5)



@pytest.mark.parametrize("workers", [2, 3])
def test_a_large_scan_is_shared_between_threads_and_scores_as_one_thread_does(monkeypatch,
                                                                              workers):
    """From SCAN_PARALLEL_MIN codes on, the scan runs on the scan threads, one contiguous
    share of whole chunks each (the last partial), and every code scores as ADC scores it."""
    count = SCAN_PARALLEL_MIN + 3 * SCAN_CHUNK + 11
    rng = np.random.default_rng(4)
    codes = rng.integers(0, BYTE_VALUES, size=(count, 5), dtype=np.uint8)
    table = rng.normal(size=(5, BYTE_VALUES)).astype(np.float32)
    scanned: list[tuple[str, range]] = []
    scan_share = codes_module._scan_share

    def recording(table, layout, scores, share):
        scanned.append((threading.current_thread().name, share))
        scan_share(table, layout, scores, share)

    monkeypatch.setattr(codes_module, "_scan_share", recording)
    scores = scan_scores(table, scan_layout(codes), workers=workers)
    np.testing.assert_allclose(scores, adc_scores(table, codes), atol=1e-5)
    shares = sorted((share for _, share in scanned), key=lambda share: share.start)
    assert len(shares) == workers
    assert all(name.startswith("meshdex-scan") for name, _ in scanned)
    assert [share.start for share in shares] == [0] + [share.stop for share in shares[:-1]]
    assert shares[-1].stop == count
    assert all(share.start % SCAN_CHUNK == 0 for share in shares)


def test_a_scan_below_the_parallel_minimum_stays_on_the_calling_thread(monkeypatch):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, BYTE_VALUES, size=(SCAN_PARALLEL_MIN - 1, 3), dtype=np.uint8)
    table = rng.normal(size=(3, BYTE_VALUES)).astype(np.float32)
    threads = []
    scan_share = codes_module._scan_share

    def recording(*args):
        threads.append(threading.current_thread())
        scan_share(*args)

    monkeypatch.setattr(codes_module, "_scan_share", recording)
    np.testing.assert_allclose(scan_scores(table, scan_layout(codes), workers=2),
                               adc_scores(table, codes), atol=1e-5)
    assert threads == [threading.current_thread()]

# --- through the engine's sections ------------------------------------------------------------

PASSAGES = 1200  # above rotation_min_vectors(64, 8) = 512: the default build learns a rotation


@pytest.fixture(scope="module")
def notes() -> tuple[list[str], np.ndarray]:
    texts = [f"note {i} about topic{i % 23} with keyword{i % 41} and detail{i % 97}"
             for i in range(PASSAGES)]
    return texts, np.arange(1, PASSAGES + 1, dtype=np.uint64) * np.uint64(7919)


def _hits(index: Index, texts: list[str], labels: np.ndarray) -> list[list[tuple[int, float]]]:
    by_label = dict(zip(labels.tolist(), texts, strict=True))
    embedder = HashingEmbedder()
    return [
        [(hit.label, round(hit.score, 5)) for hit in index.search(
            query, 5, embedder=embedder, texts=lambda ls: [by_label[int(x)] for x in ls]).hits]
        for query in ("topic3 keyword5", "detail17 note", "keyword30 about topic9")
    ]


def test_an_index_built_with_the_defaults_keeps_its_rotation_through_its_sections(notes):
    texts, labels = notes
    built = Index.build(texts, labels, embedder=HashingEmbedder(), params=NOTES_PARAMS)
    sections = built.to_sections()
    assert len(sections["codebook"]) == 8 + 16 * 16 * 4 * 2 + 64 * 64 + 64 * 4  # with rotation
    reopened = Index.from_sections({name: memoryview(data) for name, data in sections.items()},
                                   fingerprint=built.fingerprint, params=NOTES_PARAMS,
                                   rerank_bound=built.rerank_bound)
    assert _hits(reopened, texts, labels) == _hits(built, texts, labels)


def test_an_index_whose_codebook_predates_the_rotation_still_opens_and_searches(notes):
    """Bundles built before OPQ: no ``pq_rotation_iterations`` in their params, a codebook
    section of the bare float16 centroids."""
    texts, labels = notes
    old = dataclasses.replace(NOTES_PARAMS, pq_rotation_iterations=0)
    built = Index.build(texts, labels, embedder=HashingEmbedder(), params=old)
    sections = built.to_sections()
    sections["codebook"] = sections["codebook"][8:]  # drop the version header: version 0
    stored = {k: v for k, v in old.to_dict().items() if k != "pq_rotation_iterations"}
    reopened = Index.from_sections(sections, fingerprint=built.fingerprint,
                                   params=BuildParams.from_dict(stored),
                                   rerank_bound=built.rerank_bound)
    assert _hits(reopened, texts, labels) == _hits(built, texts, labels)


def test_a_forked_child_scans_on_threads_of_its_own():
    """The parent's scan threads do not exist in a fork: the child's large scan still ends."""
    rng = np.random.default_rng(6)
    codes = rng.integers(0, BYTE_VALUES, size=(SCAN_PARALLEL_MIN + 1, 3), dtype=np.uint8)
    table = rng.normal(size=(3, BYTE_VALUES)).astype(np.float32)
    layout = scan_layout(codes)
    expected = scan_scores(table, layout, workers=2)  # the parent's pool starts its threads
    child = os.fork()
    if child == 0:
        try:
            same = np.allclose(scan_scores(table, layout, workers=2), expected)
        finally:
            os._exit(0 if same else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    pytest.fail("the forked child's scan never finished")


def test_the_first_codebook_a_process_trains_equals_every_later_one():
    """scikit-learn loads its OpenMP runtime when first imported; imported inside the
    one-thread limit, the first training of a process ran on every thread and its k-means
    gave other centroids than every later training of the same vectors."""
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import numpy as np\n"
        "from fakes import HashingEmbedder\n"
        "from meshdex.index.codes import ProductQuantizer\n"
        "rng = np.random.default_rng(5)\n"
        "words = [f'word{i}' for i in range(400)]\n"
        "texts = [' '.join(rng.choice(words, 12)) + f' unique{i}' for i in range(600)]\n"
        "vectors = HashingEmbedder().embed_documents(texts)\n"
        "train = lambda: ProductQuantizer.train(vectors, subvectors=16, bits=4, sample=600,\n"
        "                                       seed=0, rotation_iterations=0).to_bytes()\n"
        "first = train()\n"
        "print(all(train() == first for _ in range(2)))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "True"
