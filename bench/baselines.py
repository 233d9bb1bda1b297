"""The reference points every meshdex variant is measured against.

- ``exact_search``: brute-force inner product over all stored embeddings — the ground truth
  (vectors are unit length, so inner product is cosine).
- ``HnswBaseline``: hnswlib with every embedding stored (M=16, ef_construction=200, the
  usual defaults), searched at a sweep of ``ef``: what a conventional vector index costs in
  bytes and what it delivers in recall and latency.

Both search from the query's exact vector; query embedding time (the same for every method)
is measured once and reported beside the table.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from bench.metrics import Query, QueryOutcome

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SWEEP = (10, 20, 40, 80, 160)
HNSW_SEED = 100
TOP_K = 10


def exact_search(passages: np.ndarray, queries: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Top-``k`` corpus positions per query by exact inner product, best first: (nq, k) int64.

    Ties are broken by position, so the ground truth is deterministic.
    """
    scores = queries @ passages.T
    k = min(k, passages.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def exact_searcher(passages: np.ndarray, k: int = TOP_K):
    """A ``measure``-compatible search function doing one brute-force scan per query."""

    def search(query: Query) -> QueryOutcome:
        return QueryOutcome(ids=exact_search(passages, query.vector[None, :], k)[0])

    return search


def exact_index_bytes(passages: np.ndarray) -> int:
    """Bytes a brute-force index stores: every embedding as float32."""
    return int(passages.shape[0] * passages.shape[1] * np.dtype(np.float32).itemsize)


@dataclass(kw_only=True)
class HnswBaseline:
    """hnswlib over all embeddings (ids = corpus positions), its build time and saved size.

    Built single-threaded by default: hnswlib's multi-threaded insertion order varies from
    run to run, and with it the graph and the recall figures.
    """

    index: hnswlib.Index
    build_s: float
    index_bytes: int

    @classmethod
    def build(cls, passages: np.ndarray, *, m: int = HNSW_M,
              ef_construction: int = HNSW_EF_CONSTRUCTION, num_threads: int = 1) -> HnswBaseline:
        index = hnswlib.Index(space="ip", dim=passages.shape[1])
        started = time.perf_counter()
        index.init_index(max_elements=passages.shape[0], M=m, ef_construction=ef_construction,
                         random_seed=HNSW_SEED)
        index.add_items(passages, np.arange(passages.shape[0]), num_threads=num_threads)
        build_s = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "hnsw.bin"
            index.save_index(str(path))
            index_bytes = path.stat().st_size
        return cls(index=index, build_s=build_s, index_bytes=index_bytes)

    def searcher(self, ef: int, k: int = TOP_K):
        """A ``measure``-compatible search function at query-time ``ef`` (single-threaded)."""
        self.index.set_num_threads(1)

        def search(query: Query) -> QueryOutcome:
            self.index.set_ef(max(ef, k))  # per call: several searchers may share the index
            labels, _ = self.index.knn_query(query.vector[None, :], k=k)
            return QueryOutcome(ids=labels[0].astype(np.int64))

        return search
