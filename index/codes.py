"""Product quantisation: small codes that give approximate query–passage similarities.

The vector is split into ``subvectors`` equal slices; each slice is replaced by the id of its
nearest centroid among ``2 ** bits`` learnt with scikit-learn's k-means (MiniBatchKMeans for
256 centroids, KMeans for 16). 4-bit codes pack two slices per byte.

Query time uses asymmetric distance computation (ADC): the exact query against the centroids.
``byte_table(query)`` returns, for every code byte position and every possible byte value, the
similarity contribution of that byte; a code's approximate similarity is then the sum of
``code_bytes`` table lookups, whatever the bit width, and codes are never unpacked.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from meshdex.index.errors import InvalidArgument
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

BYTE_VALUES = 256


@dataclass(frozen=True, kw_only=True)
class ProductQuantizer:
    """A trained codebook: ``centroids[s, c]`` is centroid ``c`` of slice ``s`` (float32)."""

    centroids: np.ndarray  # (subvectors, 2 ** bits, dim // subvectors)
    bits: int

    @property
    def subvectors(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[0] * self.centroids.shape[2]

    @property
    def code_bytes(self) -> int:
        return self.subvectors * self.bits // 8

    @classmethod
    def train(
        cls, vectors: np.ndarray, *, subvectors: int, bits: int, sample: int, seed: int
    ) -> ProductQuantizer:
        """Learn centroids on at most ``sample`` of ``vectors`` (training cost stays bounded)."""
        count, dim = vectors.shape
        if dim % subvectors:
            raise InvalidArgument(
                f"pq_subvectors={subvectors} does not divide the embedding dimension {dim}",
                hint="pick a divisor of the dimension, e.g. 16, 32 or 48 for 384",
            )
        if count == 0:
            raise InvalidArgument("cannot train product quantisation on zero vectors")
        rng = np.random.default_rng(seed)
        if count > sample:
            vectors = vectors[np.sort(rng.choice(count, size=sample, replace=False))]
        slices = vectors.reshape(len(vectors), subvectors, dim // subvectors)
        centroid_count = 1 << bits
        centroids = np.empty((subvectors, centroid_count, dim // subvectors), dtype=np.float32)
        # One BLAS/OpenMP thread: these clusterings are tiny, and with a thread pool per call
        # they ran 50x slower on a busy 2-core machine (23 s vs 0.4 s for 32 subspaces).
        with threadpool_limits(limits=1):
            for s in range(subvectors):
                centroids[s] = _cluster(slices[:, s, :], centroid_count, seed + s)
        # Round through the stored precision so codes made now and after a reload agree.
        return cls(centroids=centroids.astype("<f2").astype(np.float32), bits=bits)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes for ``vectors``: uint8 array of shape ``(n, code_bytes)``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidArgument(f"expected vectors of dimension {self.dim}")
        slices = vectors.reshape(len(vectors), self.subvectors, -1)
        ids = np.empty((len(vectors), self.subvectors), dtype=np.uint8)
        for s in range(self.subvectors):
            centroids = self.centroids[s]
            distance = (
                (centroids * centroids).sum(axis=1)[None, :] - 2.0 * slices[:, s, :] @ centroids.T
            )
            ids[:, s] = np.argmin(distance, axis=1)
        if self.bits == 4:
            return (ids[:, 0::2] | (ids[:, 1::2] << 4)).astype(np.uint8)
        return ids

    def slice_ids(self, codes: np.ndarray) -> np.ndarray:
        """Centroid id per slice, shape ``(n, subvectors)``."""
        if self.bits == 4:
            ids = np.empty((len(codes), self.subvectors), dtype=np.uint8)
            ids[:, 0::2] = codes & 0x0F
            ids[:, 1::2] = codes >> 4
            return ids
        return np.asarray(codes)

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Approximate vectors for ``codes`` (float32, shape ``(n, dim)``)."""
        ids = self.slice_ids(codes)
        parts = self.centroids[np.arange(self.subvectors)[None, :], ids]
        return parts.reshape(len(codes), self.dim)

    def byte_table(self, query: np.ndarray) -> np.ndarray:
        """ADC table, shape ``(code_bytes, 256)``: similarity contributed by each byte value."""
        slices = np.asarray(query, dtype=np.float32).reshape(self.subvectors, -1)
        per_slice = np.einsum("scd,sd->sc", self.centroids, slices)  # (subvectors, 2**bits)
        if self.bits == 8:
            return per_slice
        values = np.arange(BYTE_VALUES)
        return per_slice[0::2][:, values & 0x0F] + per_slice[1::2][:, values >> 4]

    def to_bytes(self) -> bytes:
        """The codebook section: float16 centroids (shape comes from the build params)."""
        return self.centroids.astype("<f2").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, *, subvectors: int, bits: int, dim: int):
        expected = subvectors * (1 << bits) * (dim // subvectors) * 2
        if len(data) != expected:
            raise InvalidArgument(
                f"codebook section has {len(data)} bytes, expected {expected} "
                f"for {subvectors} subvectors × {bits} bits × dimension {dim}"
            )
        half = np.frombuffer(data, dtype="<f2").reshape(subvectors, 1 << bits, dim // subvectors)
        return cls(centroids=half.astype(np.float32), bits=bits)


def adc_scores(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Approximate similarities of ``codes`` (shape ``(n, code_bytes)``) under ``table``."""
    positions = np.arange(table.shape[0]) * BYTE_VALUES
    return table.ravel()[codes.astype(np.intp) + positions].sum(axis=1)


def _cluster(points: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """``clusters`` centroids of ``points``; with fewer distinct points than clusters, the
    distinct points are repeated (every code id stays valid)."""
    distinct = np.unique(points, axis=0)
    if len(distinct) <= clusters:
        reps = -(-clusters // len(distinct))
        return np.tile(distinct, (reps, 1))[:clusters]
    if clusters > 16:
        model = MiniBatchKMeans(
            n_clusters=clusters, random_state=seed, n_init=1, batch_size=2048, max_iter=50
        )
    else:
        model = KMeans(n_clusters=clusters, random_state=seed, n_init=1, max_iter=50)
    # Near-duplicate passages can leave a centroid empty; k-means copes, the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(points)
    return model.cluster_centers_.astype(np.float32)
