"""The node's indexes: build (full or delta) a collection's ``.leann`` bundle, and search it.

One bundle per collection lives at ``DATA_DIR/indexes/COLLECTION.leann``. A build compares the
passages the store holds now with the labels the current bundle indexes and either applies the
difference to the existing graph (``Index.add``/``Index.remove``) or rebuilds from scratch, and
says which and why. Every build writes a new generation atomically (``write_bundle``), so a
search that opened the previous generation keeps reading its own mmapped file until it reopens.

Builds, deltas and imports of one collection run one at a time (``exclusive``): otherwise two
could write the same generation, or a slow rebuild could replace a delta it never saw. A build
reads its passages and the store state its bundle records in one read transaction, so the
bundle says exactly which writes it holds and ``status`` calls it current only when it is.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from meshdex.index.bundle_io import (
    Bundle,
    Signer,
    copy_bundle,
    open_bundle,
    remove_stale_temp_files,
    write_bundle,
)
from meshdex.index.bundle_manifest import BundleManifest, CacheManifest, HlcStamp, StoreState
from meshdex.index.chunking import passage_label
from meshdex.index.compat import compare_store_states
from meshdex.index.embedder import Embedder
from meshdex.index.embedders import embedder_from_spec
from meshdex.index.engine import Index, ScoreMemo, SearchStats, VectorCache
from meshdex.index.errors import BundleCorrupt, BundleError, IndexNotBuilt, InvalidArgument
from meshdex.index.filters import Filter, parse_filter
from meshdex.index.fsync import fsync_path
from meshdex.index.fusion import (
    SearchMode,
    hybrid_ranking,
    search_mode,
)
from meshdex.index.keyword import KeywordIndexFailed
from meshdex.index.length_batches import embed_in_length_order
from meshdex.index.params import BuildParams, SearchParams
from meshdex.node.decision_log import KEEP_ENTRIES as KEEP_DECISIONS
from meshdex.node.decision_log import DecisionLog
from meshdex.node.generations import GenerationRecord
from meshdex.node.keyword_indexes import KeywordIndexes
from meshdex.node.paths import INDEX_DIR_NAME, PRIVATE_DIR_MODE
from meshdex.node.records import (
    CollectionInfo,
    CollectionState,
    DocumentInfo,
    IndexCompaction,
    IndexSummary,
    PassageHit,
    SearchResults,
)
from meshdex.node.search_caches import SearchCaches, cache_digest
from meshdex.node.store import Store
from meshdex.node.store.passage_reads import PassageReader
from meshdex.node.validation import check_search
from meshdex.sync.identity import load_identity
from meshdex.sync.signing import DeviceSigner

logger = logging.getLogger(__name__)

BUNDLE_SUFFIX = ".leann"
# A delta build is refused in favour of a rebuild past these shares of the index: too many
# tombstones waste traversal, and too many inserted nodes drift from the pruned graph's shape
# (bench/bench_updates.py measures recall after 10% and 30% incremental adds).
REBUILD_TOMBSTONE_FRACTION = 0.25
REBUILD_ADDED_FRACTION = 0.5

BuildProgress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """What ``build`` did: ``action`` is "built", "delta" or "unchanged", with the reason."""

    collection: str
    action: str
    reason: str
    generation: int
    passages: int
    added: int
    removed: int
    seconds: float
    bundle_path: Path
    bundle_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "action": self.action,
            "reason": self.reason,
            "generation": self.generation,
            "passages": self.passages,
            "added": self.added,
            "removed": self.removed,
            "seconds": round(self.seconds, 3),
            "bundle_path": str(self.bundle_path),
            "bundle_bytes": self.bundle_bytes,
        }


@dataclass(frozen=True, kw_only=True)
class PinReport:
    """What ``pin`` or ``unpin`` did: matching documents, their indexed (pin) or pinned
    (unpin) passages, what changed, and the pin budget. ``released``: pins dropped because no
    live document holds their passage any more."""

    collection: str
    documents: int
    passages: int
    pinned_total: int
    pinned_bytes: int
    budget_bytes: int
    newly_pinned: int = 0
    unpinned: int = 0
    released: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(kw_only=True)
class _PinScan:
    """One pass over a collection's documents for ``pin``/``unpin``."""

    documents: int  # accepted by the filter
    matched: set[int]  # passage labels of those
    live: set[int]  # passage labels of every live document


@dataclass(frozen=True, kw_only=True)
class CachesBeside:
    """What a collection keeps on disk beside its bundle: the keyword index, the cache that
    learns from searches and the pins, each with what it holds and its budget."""

    keyword_index_bytes: int
    learned_passages: int
    learned_bytes: int
    learned_budget_bytes: int
    pinned_passages: int
    pinned_bytes: int
    pin_budget_bytes: int


@dataclass(frozen=True, kw_only=True)
class IndexStats:
    """Sizes of a collection's bundle against the raw text it indexes."""

    collection: str
    generation: int
    passages: int
    raw_passage_bytes: int
    bundle_bytes: int
    section_bytes: dict[str, int]
    build_params: dict[str, Any]
    fingerprint: dict[str, Any]
    beside: CachesBeside

    @property
    def index_bytes(self) -> int:
        """Graph, codes, id map, entry points, tombstones and cache: not full embeddings."""
        return sum(n for name, n in self.section_bytes.items() if name != "full_embeddings")

    def to_dict(self) -> dict[str, Any]:
        raw = self.raw_passage_bytes
        return {
            "collection": self.collection,
            "generation": self.generation,
            "passages": self.passages,
            "raw_passage_bytes": self.raw_passage_bytes,
            "bundle_bytes": self.bundle_bytes,
            "index_bytes": self.index_bytes,
            "index_to_raw_ratio": round(self.index_bytes / raw, 5) if raw else None,
            "section_bytes": self.section_bytes,
            "build_params": self.build_params,
            "fingerprint": self.fingerprint,
            "beside_index": dataclasses.asdict(self.beside),
        }


@dataclass
class _OpenIndex:
    """An index opened from one generation of a bundle, kept while the file is unchanged."""

    file_id: tuple[int, int, int]
    bundle: Bundle
    index: Index
    manifest: BundleManifest
    lock: threading.Lock = field(default_factory=threading.Lock)


class IndexManager:
    """Builds and searches the bundles of one store's collections; thread-safe for searches."""

    def __init__(
        self, store: Store, *, embedder_factory: Callable[[CollectionInfo], Embedder] | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.store = store
        self._embedder_factory = embedder_factory
        self._signer = signer
        self._open: dict[str, _OpenIndex] = {}
        self._build_locks: dict[str, threading.RLock] = {}
        self.decisions = DecisionLog(store.data_dir / INDEX_DIR_NAME)
        self.generations = GenerationRecord(store.data_dir / INDEX_DIR_NAME)
        self.keywords = KeywordIndexes(store.data_dir / INDEX_DIR_NAME)
        self.caches = SearchCaches(store.data_dir / INDEX_DIR_NAME)
        self._open_lock = threading.Lock()

    @contextmanager
    def exclusive(self, collection: str) -> Iterator[None]:
        """Hold ``collection``'s build lock: no other build, delta or import of it meanwhile.
        Re-entrant, so an import may build while holding it."""
        with self._open_lock:
            lock = self._build_locks.setdefault(collection, threading.RLock())
        with lock:
            yield

    @property
    def signer(self) -> Signer:
        """This device's bundle signer: every bundle written here is signed by its key, so a
        peer can check who built it (``meshdex.sync.signing``). Created on first write."""
        if self._signer is None:
            self._signer = DeviceSigner(load_identity(self.store.data_dir))
        return self._signer

    # ------------------------------------------------------------------------ paths

    def bundle_path(self, collection: str) -> Path:
        return self.store.data_dir / INDEX_DIR_NAME / f"{collection}{BUNDLE_SUFFIX}"

    def embedder_for(self, info: CollectionInfo) -> Embedder:
        """The collection's embedder; remote kinds only because the collection chose them."""
        if self._embedder_factory is not None:
            return self._embedder_factory(info)
        return embedder_from_spec(info.embedder, allow_remote=True)

    # ------------------------------------------------------------------------ build

    def build(
        self,
        collection: str,
        *,
        params: BuildParams | None = None,
        rebuild: bool = False,
        progress: BuildProgress | None = None,
    ) -> BuildReport:
        """Bring the collection's bundle up to date with its documents.

        Applies the difference to the current bundle when it was built with the same
        fingerprint and params and the difference is small; otherwise (or with ``rebuild``)
        rebuilds from every live passage. Raises ``InvalidArgument`` for an empty collection.
        Waits for any other build or import of the collection to finish first.
        """
        with self.exclusive(collection):
            return self._build(collection, params=params, rebuild=rebuild, progress=progress)

    def drop_deleted(self, collection: str) -> IndexCompaction:
        """Drop the passages of deleted documents from the collection's bundle and keyword
        index for good, embedding nothing: what ``meshdex compact`` does for the indexes.

        A flat index loses the rows; a graph index only tombstones them (its graph routes
        through them until the next rebuild). Passages added since the last build stay
        unindexed, so the bundle keeps the store state it was built from. Pins of passages no
        live document holds are released too (``_release_pins``).
        """
        with self.exclusive(collection):
            before = self.bytes_on_disk(collection)
            unchanged = IndexCompaction(collection=collection, dropped_passages=0,
                                        before_bytes=before, after_bytes=before)
            current = self._load(collection, required=False)
            if current is None:
                return unchanged
            passages, state = self.store.passage_snapshot(collection)
            wanted = dict(passages)
            live = {passage_label(key) for key in wanted}
            self._release_pins(collection, current.manifest, live)
            index = _open_private(self.bundle_path(collection))
            indexed = set(index.labels(live_only=True).tolist())
            removed = sorted(indexed - live)
            index.remove(np.array(removed, dtype=np.uint64))
            dead = index.node_count - len(index)
            if not dead or (index.has_graph and not removed):
                return unchanged
            if not index.has_graph:
                index = index.without_tombstones()
            up_to_date = live <= indexed
            manifest = self._write(collection, index, current.manifest,
                                   store_state_from(state) if up_to_date
                                   else current.manifest.store_state)
            indexed_texts = {key: text for key, text in wanted.items()
                             if passage_label(key) in indexed}
            self._update_keywords(collection, manifest, current.manifest.bundle_id, added=(),
                                  removed=removed, wanted=indexed_texts, afresh=True)
            logger.info("dropped %d deleted passages from the index of %r", dead, collection)
            return IndexCompaction(collection=collection, dropped_passages=dead,
                                   before_bytes=before,
                                   after_bytes=self.bytes_on_disk(collection))

    def bytes_on_disk(self, collection: str) -> int:
        """Bytes of the collection's bundle and keyword indexes (0 where there are none)."""
        bundle = self.bundle_path(collection)
        size = bundle.stat().st_size if bundle.exists() else 0
        return size + self.keywords.bytes_on_disk(collection)

    def _build(
        self,
        collection: str,
        *,
        params: BuildParams | None,
        rebuild: bool,
        progress: BuildProgress | None,
    ) -> BuildReport:
        started = time.monotonic()
        info = self.store.get_collection(collection)
        embedder = self.embedder_for(info)
        passages, state = self.store.passage_snapshot(collection)
        wanted = dict(passages)
        labels_now = {passage_label(key): key for key in wanted}
        try:
            current = self._load(collection, required=False)
        except BundleError as error:
            if not rebuild:
                raise
            logger.warning("rebuilding %s from its documents: %s", collection, error.message)
            current = None  # the damaged file is replaced by the rebuild
        reason = self._rebuild_reason(current, embedder, params, rebuild)
        if reason is None:
            # A private copy: the shared one may be serving searches while this one changes.
            index = _open_private(self.bundle_path(collection))
            indexed = set(index.labels(live_only=True).tolist())
            added = sorted(set(labels_now) - indexed)
            removed = sorted(indexed - set(labels_now))
            if not added and not removed:
                return self._unchanged(collection, current.manifest, index, state, wanted,
                                       started)
            dead_after = index.node_count - len(index) + len(removed)
            too_dead = dead_after > REBUILD_TOMBSTONE_FRACTION * (index.node_count + len(added))
            if too_dead and index.has_graph:
                reason = (f"{dead_after} deleted passages would exceed "
                          f"{REBUILD_TOMBSTONE_FRACTION:.0%} of the graph: compacting")
            elif (not index.has_graph
                  and len(index) + len(added) - len(removed) >= index.params.graph_min_nodes):
                reason = (f"the collection grew past graph_min_nodes="
                          f"{index.params.graph_min_nodes}: building its graph")
            elif len(added) > REBUILD_ADDED_FRACTION * max(len(index), 1):
                reason = (f"{len(added)} new passages exceed {REBUILD_ADDED_FRACTION:.0%} of "
                          f"the {len(index)} indexed: a fresh graph is better than inserts")
        if reason is None:
            if removed:
                index.remove(np.array(removed, dtype=np.uint64))
            if too_dead:  # a flat index: its deleted rows go without re-embedding the rest
                index = index.without_tombstones()
            if added:
                texts = [wanted[labels_now[label]] for label in added]
                if progress is not None:
                    progress("embedding", 0, len(texts))
                index.add(texts, np.array(added, dtype=np.uint64), embedder=embedder)
                if progress is not None:
                    progress("embedding", len(texts), len(texts))
            manifest = self._write(collection, index, current.manifest,
                                   store_state_from(state))
            self._update_keywords(collection, manifest, current.manifest.bundle_id,
                                  added=[(wanted[labels_now[label]], label) for label in added],
                                  removed=removed, wanted=wanted)
            dropped = f"; dropped {dead_after} deleted passages for good" if too_dead else ""
            return self._report(collection, manifest, "delta",
                                f"added {len(added)} and removed {len(removed)} passages "
                                f"in place{dropped}", len(wanted), len(added), len(removed),
                                started)
        keys = sorted(wanted)
        if not keys:
            raise InvalidArgument(f"collection {collection!r} has no passages to index",
                                  hint="add documents first: meshdex add PATH")
        index = Index.build(
            [wanted[key] for key in keys],
            np.array([passage_label(key) for key in keys], dtype=np.uint64),
            embedder=embedder,
            params=params or (current.index.params if current else BuildParams()),
            progress=(lambda done, total: progress("embedding", done, total)) if progress else None,
        )
        manifest = self._write(collection, index, current.manifest if current else None,
                               store_state_from(state))
        self._update_keywords(collection, manifest, None, added=(), removed=(), wanted=wanted)
        return self._report(collection, manifest, "built", reason, len(keys), len(keys), 0,
                            started)

    def _unchanged(self, collection: str, current: BundleManifest, index: Index,
                   state: CollectionState, wanted: dict[bytes, str],
                   started: float) -> BuildReport:
        """The report of a build that finds every live passage indexed already.

        The store may still have moved on since the bundle was written (a document deleted
        and added back before this build, metadata changed): then the bundle, its index as it
        was, is written once more as a new generation recording the store state it covers, or
        ``status``, searches and export would call it behind until a rebuild. Otherwise
        nothing is written.
        """
        reason = "the bundle already indexes every live passage"
        covered = store_state_from(state)
        store_ahead, _ = compare_store_states(current.store_state, covered)
        if not store_ahead:
            return self._report(collection, current, "unchanged", reason, len(wanted), 0, 0,
                                started)
        manifest = self._write(collection, index, current, covered)
        self._update_keywords(collection, manifest, current.bundle_id, added=(), removed=(),
                              wanted=wanted)
        return self._report(collection, manifest, "unchanged",
                            f"{reason}; recorded the store state it now covers",
                            len(wanted), 0, 0, started)

    def _update_keywords(self, collection: str, manifest: BundleManifest,
                         parent_bundle_id: str | None, *, added: list[tuple[str, int]] | tuple[()],
                         removed: list[int] | tuple[()], wanted: dict[bytes, str],
                         afresh: bool = False) -> None:
        """Bring the keyword index along with the bundle just written.

        It is derived data: if this fails, the bundle stands and the first keyword or hybrid
        search rebuilds it, so the failure is logged rather than failing the build.
        """
        def everything() -> tuple[list[str], list[int]]:
            keys = sorted(wanted)
            return [wanted[key] for key in keys], [passage_label(key) for key in keys]

        try:
            self.keywords.after_build(collection, manifest.bundle_id,
                                      parent_bundle_id=parent_bundle_id, added=added,
                                      removed=removed, everything=everything, afresh=afresh)
        except (OSError, ValueError, KeywordIndexFailed) as error:
            logger.warning("keyword index of %r not updated (rebuilt on first use): %s",
                           collection, error)

    def _rebuild_reason(
        self,
        current: _OpenIndex | None,
        embedder: Embedder,
        params: BuildParams | None,
        rebuild: bool,
    ) -> str | None:
        if rebuild:
            return "rebuild requested"
        if current is None:
            return "no index yet"
        differences = current.index.fingerprint.differences(embedder.fingerprint)
        if differences:
            return "the embedding fingerprint changed (" + "; ".join(differences) + ")"
        if params is not None and params != current.index.params:
            return "build params changed"
        return None

    def _write(
        self, collection: str, index: Index, parent: BundleManifest | None,
        store_state: StoreState,
    ) -> BundleManifest:
        """Write the next generation of ``collection``'s bundle, recording ``store_state`` (of
        what the build read) as the store state it holds."""
        manifest = BundleManifest(
            bundle_id=str(uuid.uuid4()),
            collection=collection,
            generation=self._next_generation(collection, parent),
            parent_generation=parent.generation if parent else None,
            device_id=self.store.device_id,
            created_at=HlcStamp(physical_ms=int(time.time() * 1000), logical=0,
                                device_id=self.store.device_id),
            store_state=store_state,
            build_params=index.params.to_dict(),
            collection_config=collection_config(self.store.get_collection(collection)),
            fingerprint=index.fingerprint,
            cache=CacheManifest(node_count=index.cache_node_count,
                                fingerprint_digest=index.cache_fingerprint_digest),
            rerank_bound=index.rerank_bound,
        )
        path = self.bundle_path(collection)
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        remove_stale_temp_files(path)  # left by a killed writer; we hold the build lock
        written = write_bundle(path, manifest, index.to_sections(), signer=self.signer)
        self.generations.record(collection, written.generation)
        return written

    def install(self, collection: str, source: Bundle, *, drop_cache: bool) -> BundleManifest:
        """Install a received bundle as ``collection``'s index, numbered as this device's next
        generation (its own number counts on the device that built it). Hold ``exclusive``."""
        installed = self._readable_manifest(collection)
        path = self.bundle_path(collection)
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        written = copy_bundle(source, path, drop_cache=drop_cache, manifest_changes={
            "generation": self._next_generation(collection, installed),
            "parent_generation": installed.generation if installed else None,
        }, signer=self.signer)
        self.generations.record(collection, written.generation)
        return written

    def _readable_manifest(self, collection: str) -> BundleManifest | None:
        """The installed bundle's manifest; None if there is none or it is damaged."""
        try:
            opened = self._load(collection, required=False)
        except BundleError:
            return None
        return opened.manifest if opened else None

    def _next_generation(self, collection: str, installed: BundleManifest | None) -> int:
        """One past every generation this collection had here: the installed bundle's, the
        recorded highest, and those the decision log has for builds here (data dirs from
        before the record; an import's entry carries the sender's number), so a rebuild after
        damage continues the numbering instead of restarting at 1."""
        logged = [record.generation or 0 for record in self.decisions.recent(
            2 * KEEP_DECISIONS, collection=collection) if record.trigger == "build"]
        return max([self.generations.highest(collection),
                    installed.generation if installed else 0, *logged]) + 1

    def _report(self, collection: str, manifest: BundleManifest, action: str, reason: str,
                passages: int, added: int, removed: int, started: float) -> BuildReport:
        path = self.bundle_path(collection)
        report = BuildReport(
            collection=collection, action=action, reason=reason,
            generation=manifest.generation,
            passages=passages,
            added=added, removed=removed, seconds=time.monotonic() - started,
            bundle_path=path, bundle_bytes=path.stat().st_size,
        )
        self.decisions.append(collection=collection, trigger="build", decision=action,
                              reasons=[reason], generation=manifest.generation)
        return report

    # ----------------------------------------------------------------------- search

    def search(
        self,
        collection: str,
        query: str,
        *,
        top_k: int = 5,
        filter: str | Mapping[str, Any] | None = None,
        params: SearchParams | None = None,
        deadline: float | None = None,
        mode: str | None = None,
    ) -> SearchResults:
        """The ``top_k`` passages of ``collection`` most similar to ``query``.

        ``filter`` (shorthand or JSON, see ``meshdex.index.filters``) applies to document
        metadata during the search. ``mode`` (``meshdex.index.fusion``): "semantic" ranks by
        cosine similarity (the score), "keyword" by BM25 (the score), "hybrid" (the default)
        fuses both rankings (the score is the fused rank score). Raises ``IndexNotBuilt``
        before the first build, ``FingerprintMismatch`` if the collection's embedder no longer
        matches the bundle. ``index_behind`` says the store holds changes the index does not
        have yet.
        """
        check_search(query, top_k)
        chosen = search_mode(mode)
        info = self.store.get_collection(collection)
        condition = parse_filter(filter) if filter else None
        opened = self._load(collection, required=True)
        results = self._search_opened(collection, query, top_k, chosen, opened, info=info,
                                      condition=condition, params=params, deadline=deadline)
        behind, _ = self._freshness(collection, opened.manifest)
        return dataclasses.replace(results, index_behind=behind)

    def _freshness(self, collection: str, manifest: BundleManifest) -> tuple[bool, bool]:
        """(the store holds changes the bundle does not index, the bundle indexes changes the
        store has not received). Only the first is stale: for the second (a bundle imported,
        its documents still on their way by sync) no build can catch the store up."""
        store_ahead, bundle_ahead = compare_store_states(
            manifest.store_state, store_state_of(self.store, collection))
        return bool(store_ahead), bool(bundle_ahead)

    def _search_opened(
        self, collection: str, query: str, top_k: int, chosen: SearchMode, opened: _OpenIndex,
        *, info: CollectionInfo, condition: Filter | None, params: SearchParams | None,
        deadline: float | None,
    ) -> SearchResults:
        with self.store.passage_reads(collection) as reads:
            resolver = HitResolver(reads, condition)
            caches = (self.caches.pinned(collection, opened.manifest),
                      self.caches.learned(collection, opened.manifest, len(opened.index)))
            memo = self.caches.memo(collection, opened.manifest)
            if chosen is not SearchMode.SEMANTIC:
                return self._keyword_search(collection, query, top_k, chosen, opened, resolver,
                                            info=info, params=params, deadline=deadline,
                                            caches=caches, memo=memo)
            result = opened.index.search(
                query,
                top_k,
                embedder=self.embedder_for(info),
                texts=resolver.texts,
                # Always filter: passages deleted since the last build must not come back.
                accept=resolver.accept,
                params=params,
                deadline=deadline,
                vector_caches=caches,
                score_memo=memo,
            )
            self.caches.after_search(collection)
            hits = [resolver.hit(hit.label, hit.score, similarity=hit.score)
                    for hit in result.hits]
            return SearchResults(collection=collection,
                                 hits=[hit for hit in hits if hit is not None], stats=result.stats)

    def _keyword_search(
        self, collection: str, query: str, top_k: int, mode: SearchMode, opened: _OpenIndex,
        resolver: HitResolver, *, info: CollectionInfo, params: SearchParams | None,
        deadline: float | None, caches: Sequence[VectorCache], memo: ScoreMemo,
    ) -> SearchResults:
        started = time.perf_counter()
        keywords = self.keywords.for_search(
            collection, opened.manifest.bundle_id,
            lambda: self._bundle_passages(collection, opened.index))
        keyword_hits = keywords.search(query, top_k, accept=resolver.accept)
        bm25 = {hit.label: hit.score for hit in keyword_hits}
        similarity: dict[int, float] = {}
        if mode is SearchMode.KEYWORD:
            ranked = [(hit.label, hit.score) for hit in keyword_hits]
            stats = SearchStats(strategy="keyword (bm25)")
        else:
            semantic = opened.index.search(
                query, top_k, embedder=self.embedder_for(info),
                texts=resolver.texts,
                accept=resolver.accept, params=params, deadline=deadline, vector_caches=caches,
                score_memo=memo)
            self.caches.after_search(collection)
            similarity = {hit.label: hit.score for hit in semantic.hits}
            ranked = hybrid_ranking(query, [hit.label for hit in semantic.hits],
                                    [(hit.label, hit.score) for hit in keyword_hits], top_k)
            stats = dataclasses.replace(semantic.stats,
                                        strategy=f"hybrid (rrf: {semantic.stats.strategy} + bm25)")
        stats.total_seconds = time.perf_counter() - started
        hits = [resolver.hit(label, score, similarity=similarity.get(label),
                             bm25=bm25.get(label)) for label, score in ranked]
        return SearchResults(collection=collection,
                             hits=[hit for hit in hits if hit is not None], stats=stats)

    def _bundle_passages(self, collection: str, index: Index) -> tuple[list[str], list[int]]:
        """The live passages a bundle indexes, as texts and labels, for its keyword index."""
        indexed = set(index.labels(live_only=True).tolist())
        texts, labels = [], []
        for key, text in self.store.iter_passages(collection):
            label = passage_label(key)
            if label in indexed:  # passages added since the build wait for the next build
                texts.append(text)
                labels.append(label)
        return texts, labels
    def pin(self, collection: str, filter: str | Mapping[str, Any],
            progress: Callable[[int, int], None] | None = None) -> PinReport:
        """Keep exact embeddings of the indexed passages of every document matching ``filter``
        so searches never recompute them; counted against the pin budget (over it:
        ``ResourceExhausted``, nothing pinned). Pins of passages no live document holds any
        more (an edited or deleted document's) are released first, so they do not hold the
        budget. Raises ``IndexNotBuilt`` before a build."""
        condition = parse_filter(filter)
        opened = self._load(collection, required=True)
        pinned = self.caches.pinned(collection, opened.manifest)
        scan = self._pin_scan(collection, condition)
        released = self._release_pins(collection, opened.manifest, scan.live)
        indexed = set(opened.index.labels().tolist())
        chosen = np.array(sorted(scan.matched & indexed), dtype=np.uint64)
        fresh = np.array([x for x in chosen.tolist() if x not in pinned], dtype=np.uint64)
        if len(fresh):
            vectors = embed_in_length_order(self.embedder_for(self.store.get_collection(
                collection)), self.store.passage_texts(collection, fresh), progress)
            pinned.pin(fresh, vectors, cache_digest(opened.manifest))
            self.caches.save_pinned(collection)
        return PinReport(collection=collection, documents=scan.documents, passages=len(chosen),
                         newly_pinned=len(fresh), released=released, pinned_total=len(pinned),
                         pinned_bytes=pinned.used_bytes, budget_bytes=pinned.budget_bytes)

    def unpin(self, collection: str, filter: str | Mapping[str, Any] | None) -> PinReport:
        """Stop pinning the passages of documents matching ``filter`` (None: every pin), and
        release the pins of passages no live document holds. A passage two documents share
        is one pin: unpinning either document's passages unpins it. Raises
        ``IndexNotBuilt`` before a build."""
        condition = None if filter is None else parse_filter(filter)
        opened = self._load(collection, required=True)
        pinned = self.caches.pinned(collection, opened.manifest)
        held = pinned.labels()
        if condition is None:
            scan = _PinScan(documents=0, matched=set(held), live=set(held))
        else:
            scan = self._pin_scan(collection, condition)
        released = self._release_pins(collection, opened.manifest, scan.live)
        unpinned = pinned.forget(held & scan.matched)
        if unpinned:
            self.caches.save_pinned(collection)
        return PinReport(collection=collection, documents=scan.documents,
                         passages=len(held & scan.matched), unpinned=unpinned,
                         released=released, pinned_total=len(pinned),
                         pinned_bytes=pinned.used_bytes, budget_bytes=pinned.budget_bytes)

    def _release_pins(self, collection: str, manifest: BundleManifest, live: set[int]) -> int:
        """Drop (and save) the pins of passages not in ``live``; how many went. A pin is
        never evicted, so one whose passage is gone would hold the pin budget for good."""
        pinned = self.caches.pinned(collection, manifest)
        released = pinned.forget(pinned.labels() - live)
        if released:
            self.caches.save_pinned(collection)
            logger.info("released %d pins of passages no document of %r holds", released,
                        collection)
        return released

    def _pin_scan(self, collection: str, condition: Filter) -> _PinScan:
        """The passage labels of the documents ``condition`` accepts, and of all live ones."""
        scan = _PinScan(documents=0, matched=set(), live=set())
        for document in self.store.iter_documents(collection):
            labels = set(map(passage_label, document.passage_keys))
            scan.live |= labels
            if condition.accepts(document):
                scan.documents += 1
                scan.matched |= labels
        return scan

    # ------------------------------------------------------------------------ stats

    def stats(self, collection: str) -> IndexStats:
        """Bundle sizes by section against the collection's raw passage bytes."""
        opened = self._load(collection, required=True)
        raw = sum(len(text.encode("utf-8")) for _, text in self.store.iter_passages(collection))
        manifest = opened.manifest
        return IndexStats(
            collection=collection,
            generation=manifest.generation,
            passages=len(opened.index),
            raw_passage_bytes=raw,
            bundle_bytes=self.bundle_path(collection).stat().st_size,
            section_bytes={entry.name: entry.length for entry in manifest.sections},
            build_params=dict(manifest.build_params),
            fingerprint=vars(manifest.fingerprint).copy(),
            beside=self._caches_beside(collection, manifest, len(opened.index)),
        )

    def _caches_beside(self, collection: str, manifest: BundleManifest,
                       passages: int) -> CachesBeside:
        learned = self.caches.learned(collection, manifest, passages)
        pinned = self.caches.pinned(collection, manifest)
        return CachesBeside(keyword_index_bytes=self.keywords.bytes_on_disk(collection),
                            learned_passages=len(learned), learned_bytes=learned.used_bytes,
                            learned_budget_bytes=learned.budget_bytes,
                            pinned_passages=len(pinned), pinned_bytes=pinned.used_bytes,
                            pin_budget_bytes=pinned.budget_bytes)

    def summaries(self) -> list[IndexSummary]:
        """The current bundle of every collection that has one, sorted by collection."""
        summaries = []
        for info in self.store.list_collections():
            try:
                opened = self._load(info.name, required=False)
            except BundleError as error:
                summaries.append(IndexSummary(
                    collection=info.name, generation=self.generations.highest(info.name),
                    passages=0, bundle_bytes=self.bundle_path(info.name).stat().st_size,
                    model_id="", model_hash="", stale=True, damaged=str(error)))
                continue
            if opened is None:
                continue
            manifest = opened.manifest
            stale, waiting = self._freshness(info.name, manifest)
            summaries.append(IndexSummary(
                collection=info.name,
                generation=manifest.generation,
                passages=len(opened.index),
                bundle_bytes=self.bundle_path(info.name).stat().st_size,
                model_id=manifest.fingerprint.model_id,
                model_hash=manifest.fingerprint.model_hash,
                stale=stale,
                waiting_for_documents=waiting,
            ))
        return summaries

    def manifest(self, collection: str) -> BundleManifest | None:
        """The current bundle's manifest, or None before the first build."""
        opened = self._load(collection, required=False)
        return opened.manifest if opened else None

    def forget(self, collection: str) -> None:
        """Remove the collection's bundle, keyword index and caches, so a new collection of
        the same name starts with no index rather than the old one's. Call under
        ``exclusive``, before the collection leaves the store: a crash in between leaves a
        collection without an index, which a build repairs."""
        self.keywords.forget(collection)
        self.caches.forget(collection)
        with self._open_lock:
            self._open.pop(collection, None)
        path = self.bundle_path(collection)
        if path.exists():
            path.unlink()
            fsync_path(path.parent)

    # ---------------------------------------------------------------------- loading

    def _load(self, collection: str, *, required: bool) -> _OpenIndex | None:
        """The open index of the bundle on disk now, reopened when a build replaced it."""
        path = self.bundle_path(collection)
        try:
            stat = path.stat()
        except FileNotFoundError:
            if required:
                self.store.get_collection(collection)  # CollectionNotFound names the fix
                raise IndexNotBuilt(f"collection {collection!r} has no index yet",
                                    hint=f"run: meshdex build --collection {collection}") from None
            return None
        file_id = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._open_lock:
            opened = self._open.get(collection)
            if opened is not None and opened.file_id == file_id:
                return opened
            try:
                bundle = open_bundle(path, verify="lazy")
                index = _index_of(bundle)
            except BundleError as error:
                raise _damaged(collection, error.message) from error
            if bundle.manifest.collection != collection:
                raise _damaged(collection, f"the file indexes collection "
                               f"{bundle.manifest.collection!r}, not {collection!r}")
            fresh = _OpenIndex(file_id=file_id, bundle=bundle, index=index,
                               manifest=bundle.manifest)
            # The previous generation's mmap stays alive for searches that still hold it.
            self._open[collection] = fresh
            return fresh

    def close(self) -> None:
        self.caches.close()
        with self._open_lock:
            self._open.clear()


def _damaged(collection: str, problem: str) -> BundleCorrupt:
    """The one error for an installed bundle that cannot be served, and the way back."""
    return BundleCorrupt(
        f"the installed index of collection {collection!r} is damaged ({problem})",
        hint=f"rebuild it from the documents: meshdex build --rebuild --collection {collection}",
    )


def collection_config(info: CollectionInfo) -> dict[str, Any]:
    """How a collection cuts and embeds passages, as a bundle manifest records it."""
    return {"embedder": info.embedder.to_dict(), "chunking": info.chunking.to_dict()}


def store_state_of(store: Store, collection: str) -> StoreState:
    """The store state a bundle built now would record: watermarks and the newest stamp."""
    return store_state_from(store.state(collection))


def store_state_from(state: CollectionState) -> StoreState:
    """A collection's state read from the store, as a bundle manifest records it."""
    stamp = state.max_hlc
    return StoreState(
        seq_watermarks=dict(state.watermarks),
        max_hlc=HlcStamp(physical_ms=stamp.physical_ms, logical=stamp.logical,
                         device_id=stamp.device_id) if stamp else HlcStamp(),
    )


def _index_of(bundle: Bundle) -> Index:
    manifest = bundle.manifest
    return Index.from_sections(
        bundle.sections(),
        fingerprint=manifest.fingerprint,
        params=BuildParams.from_dict(dict(manifest.build_params)),
        rerank_bound=manifest.rerank_bound,
    )


def _open_private(path: Path) -> Index:
    """An index no search shares, verified in full, for a build to change."""
    return _index_of(open_bundle(path, verify="full"))


class HitResolver:
    """Resolves labels to live documents for filtering and results, from the search's one
    snapshot of the store (``Store.passage_reads``).

    A label whose passage no longer has a live document in the collection (deleted since the
    last build) is rejected like a filtered one, so results never point at deleted text.
    """

    def __init__(self, reads: PassageReader, condition: Filter | None) -> None:
        self.reads, self.condition = reads, condition
        self._matches: dict[int, list[DocumentInfo]] = {}

    def texts(self, labels: np.ndarray) -> list[str]:
        """The passages' texts, in order (``PassageReader.texts``)."""
        return self.reads.texts(np.asarray(labels, dtype=np.uint64).tolist())

    def _matching(self, label: int) -> list[DocumentInfo]:
        if label not in self._matches:
            documents = self.reads.holders(label)
            self._matches[label] = (documents if self.condition is None else
                                    [doc for doc in documents
                                     if self.condition.accepts(doc)])
        return self._matches[label]

    def accept(self, label: int) -> bool:
        return bool(self._matching(label))

    def hit(self, label: int, score: float, *, similarity: float | None = None,
            bm25: float | None = None) -> PassageHit | None:
        documents = self._matching(label)
        if not documents:
            return None
        document = documents[0]
        text = self.reads.text(label) or ""
        return PassageHit(document_id=document.id, source=document.source,
                          metadata=document.metadata, passage=text, score=score,
                          similarity=similarity, bm25=bm25)
