"""A session cache in front of the learned cache: exact scores already computed for a query.

The learned cache holds passage vectors under a budget of a few % of the text, which cannot
hold the ~2,400 distinct passages 175 FAQ questions recompute (issue 12: asked again, they
recomputed 91% of the first pass). A repeated question does not need the vectors, only the
scores its search already computed, and a score costs 12 bytes where a vector costs 780. So
this memo keeps, per query vector (the SHA-256 of its float32 bytes) under an embedding
fingerprint, the exact score of every candidate a search with it scored, by passage label.
The re-ranker consults it before any vector cache and before any recompute, and a repeat
stops where the first search stopped: it recomputes nothing already scored for it and returns
the same hits.

Why the entries stay valid: a label is a hash of the passage's content, and the score of a
(query, passage) pair depends only on the two vectors, so it holds across index generations
and delta builds for the same fingerprint; another fingerprint is part of the key and never
hits. The memo only supplies scores of candidates the current index produced (filters and
deletions applied), so a deleted passage is never returned from it.

Bounded by ``budget_bytes``, least recently used query first out. An entry costs
``QUERY_OVERHEAD_BYTES`` plus ``SCORE_BYTES`` a score; the overhead is what ``tracemalloc``
measured for the Python objects of one entry (568 bytes: key, two small arrays, dict slot),
rounded up. It lives in the memory of one serving process and is not persisted: it is keyed by
what people asked, so a file of it would keep beside the index a record of every question
(its embedding's digest and the passages it scored); a restart costs one search per question
to relearn it, and the learned cache (persisted) still serves vectors across restarts.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from meshdex.index.errors import InvalidArgument

SCORE_BYTES = 12  # uint64 label + float32 score
QUERY_OVERHEAD_BYTES = 600  # key strings and tuple, two array headers, the dict slot
DEFAULT_BUDGET_BYTES = 4 * 1024 * 1024  # ~4,600 questions that scored 24 candidates each


@dataclass(frozen=True)
class _Entry:
    labels: np.ndarray  # uint64, sorted
    scores: np.ndarray  # float32, by label

    @property
    def cost(self) -> int:
        return QUERY_OVERHEAD_BYTES + SCORE_BYTES * len(self.labels)


def query_digest(query_vector: np.ndarray) -> str:
    """The memo's key for a query: the SHA-256 of its float32 bytes (same vector, same key)."""
    return hashlib.sha256(np.ascontiguousarray(query_vector, dtype="<f4").tobytes()).hexdigest()


class QueryScoreMemo:
    """Exact scores by (fingerprint digest, query vector, passage label); thread-safe, LRU
    over queries under ``budget_bytes``."""

    def __init__(self, *, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes < 0:
            raise InvalidArgument(f"memo budget must be >= 0 bytes, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._used

    def lookup(self, query_vector: np.ndarray, labels: np.ndarray,
               fingerprint_digest: str) -> tuple[np.ndarray, np.ndarray]:
        """``(hit_mask, scores of the hits in order)`` for ``labels`` under this query."""
        key = (fingerprint_digest, query_digest(query_vector))
        labels = np.asarray(labels, dtype=np.uint64)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return np.zeros(len(labels), dtype=bool), np.zeros(0, dtype=np.float32)
            self._entries.move_to_end(key)
        positions = np.minimum(np.searchsorted(entry.labels, labels), len(entry.labels) - 1)
        hit = entry.labels[positions] == labels
        return hit, entry.scores[positions[hit]]

    def remember(self, query_vector: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 fingerprint_digest: str) -> None:
        """Add exact ``scores`` of ``labels`` to the query's entry (a label already there keeps
        its score: it is the same pair), then drop least recently used queries to the budget.
        An entry bigger than the whole budget is not kept."""
        key = (fingerprint_digest, query_digest(query_vector))
        labels = np.asarray(labels, dtype=np.uint64)
        scores = np.asarray(scores, dtype=np.float32)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used -= old.cost
                fresh = ~np.isin(labels, old.labels)
                labels = np.concatenate([old.labels, labels[fresh]])
                scores = np.concatenate([old.scores, scores[fresh]])
            labels, first = np.unique(labels, return_index=True)
            entry = _Entry(labels=labels, scores=scores[first])
            if not len(labels) or entry.cost > self.budget_bytes:
                return
            self._entries[key] = entry
            self._used += entry.cost
            while self._used > self.budget_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._used -= dropped.cost
