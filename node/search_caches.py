"""Each collection's search caches: learned and pinned vectors beside its bundle, and the
query score memo in memory.

``DATA_DIR/indexes/COLLECTION.learned-cache`` holds what searches recomputed (LFU with
ageing, ``meshdex.index.learned_cache``), ``COLLECTION.pinned-cache`` what ``meshdex pin``
chose to keep. Both are bound to the fingerprint digest the bundle's cache manifest records:
opening them for a bundle of another model drops them. Learned vectors are saved at most
every ``SAVE_INTERVAL_S`` while searches run and when the node closes, so a restart keeps
what was learned (a kill -9 loses at most the last interval: it is a cache).

The score memo (``meshdex.index.score_memo``, ``MEMO_BUDGET_BYTES`` a collection) sits in
front of both: this process's searches' exact scores by query. It is never written to disk
(see that module for why), replaced when the collection's fingerprint changes, and dropped
with the collection.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

from meshdex.index.bundle_manifest import BundleManifest
from meshdex.index.learned_cache import LearnedCache, PinnedVectors, entry_bytes
from meshdex.index.score_memo import DEFAULT_BUDGET_BYTES, QueryScoreMemo
from meshdex.node.errors import DataDirNotWritable

logger = logging.getLogger(__name__)

# The learned cache may hold this share of a collection's passages: on the docs corpus
# (11,657 passages of ~1 KB) 350 passages, 2.2% of the text.
LEARNED_PASSAGE_FRACTION = 0.03
PIN_BUDGET_BYTES = 32 * 1024 * 1024  # default pin budget, separate from the learned cache's
MEMO_BUDGET_BYTES = DEFAULT_BUDGET_BYTES  # per collection and serving process, in memory
SAVE_INTERVAL_S = 5.0
LEARNED_SUFFIX = ".learned-cache"
PINNED_SUFFIX = ".pinned-cache"


def cache_digest(manifest: BundleManifest) -> str:
    """The fingerprint digest the bundle's cache manifest records (the index's otherwise)."""
    if manifest.cache is not None:
        return manifest.cache.fingerprint_digest
    return manifest.fingerprint.digest()


class SearchCaches:
    """The learned and pinned caches of the collections of one index directory."""

    def __init__(self, index_dir: Path, *, pin_budget_bytes: int = PIN_BUDGET_BYTES) -> None:
        self._dir = index_dir
        self._pin_budget_bytes = pin_budget_bytes
        self._learned: dict[str, tuple[str, LearnedCache]] = {}
        self._pinned: dict[str, tuple[str, PinnedVectors]] = {}
        self._memos: dict[str, tuple[str, QueryScoreMemo]] = {}
        self._saved_at: dict[str, float] = {}
        self._unsaveable: set[str] = set()  # collections whose learned cache failed to save
        self._lock = threading.Lock()

    def learned_path(self, collection: str) -> Path:
        return self._dir / f"{collection}{LEARNED_SUFFIX}"

    def pinned_path(self, collection: str) -> Path:
        return self._dir / f"{collection}{PINNED_SUFFIX}"

    def learned(self, collection: str, manifest: BundleManifest, passages: int) -> LearnedCache:
        """The collection's learned cache for this bundle (reloaded when its digest changes)."""
        digest, dim = cache_digest(manifest), manifest.fingerprint.dim
        budget = math.ceil(LEARNED_PASSAGE_FRACTION * passages) * entry_bytes(dim)
        with self._lock:
            held = self._learned.get(collection)
            if held is None or held[0] != digest:
                cache = LearnedCache.load(self.learned_path(collection),
                                          fingerprint_digest=digest, dim=dim,
                                          budget_bytes=budget)
                self._learned[collection] = held = (digest, cache)
            return held[1]

    def pinned(self, collection: str, manifest: BundleManifest) -> PinnedVectors:
        digest, dim = cache_digest(manifest), manifest.fingerprint.dim
        with self._lock:
            held = self._pinned.get(collection)
            if held is None or held[0] != digest:
                cache = PinnedVectors.load(self.pinned_path(collection),
                                           fingerprint_digest=digest, dim=dim,
                                           budget_bytes=self._pin_budget_bytes)
                self._pinned[collection] = held = (digest, cache)
            return held[1]

    def memo(self, collection: str, manifest: BundleManifest) -> QueryScoreMemo:
        """The collection's score memo, a new one when the bundle's fingerprint changed (the
        memo keys by fingerprint as well: this only frees the old model's scores)."""
        digest = manifest.fingerprint.digest()
        with self._lock:
            held = self._memos.get(collection)
            if held is None or held[0] != digest:
                held = self._memos[collection] = (
                    digest, QueryScoreMemo(budget_bytes=MEMO_BUDGET_BYTES))
            return held[1]

    def after_search(self, collection: str) -> None:
        """Save the learned cache if it changed and the last save is ``SAVE_INTERVAL_S`` old."""
        now = time.monotonic()
        if now - self._saved_at.get(collection, 0.0) >= SAVE_INTERVAL_S:
            self._save_learned(collection)
            self._saved_at[collection] = now

    def save_pinned(self, collection: str) -> None:
        held = self._pinned.get(collection)
        if held is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            held[1].save(self.pinned_path(collection))

    def _save_learned(self, collection: str) -> None:
        """Save a changed learned cache; one that cannot be written (a read-only data
        directory) is kept in memory with one warning, and searches go on."""
        held = self._learned.get(collection)
        if held is None or not held[1].changed:
            return
        path = self.learned_path(collection)
        try:
            held[1].save(path)
        except OSError as error:
            if collection not in self._unsaveable:
                self._unsaveable.add(collection)
                level = logging.INFO if DataDirNotWritable.is_cause(error) else logging.WARNING
                logger.log(level, "cannot save the learned cache of %s to %s (%s): it is kept "
                           "for this process only", collection, path, error.strerror)

    def forget(self, collection: str) -> None:
        """Drop the collection's caches from memory and disk (the collection is being dropped)."""
        with self._lock:
            self._learned.pop(collection, None)
            self._pinned.pop(collection, None)
            self._memos.pop(collection, None)
            self._saved_at.pop(collection, None)
        self.learned_path(collection).unlink(missing_ok=True)
        self.pinned_path(collection).unlink(missing_ok=True)

    def close(self) -> None:
        """Save every changed learned cache."""
        for collection in list(self._learned):
            self._save_learned(collection)
