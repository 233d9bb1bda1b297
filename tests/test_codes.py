"""Product-quantisation codes give similarities close to the exact ones, at a few bytes each."""

from __future__ import annotations

import numpy as np
import pytest
from meshdex.index.codes import ProductQuantizer, adc_scores
from meshdex.index.errors import InvalidArgument


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
