"""The index engine: build a pruned compact graph with codes, search it with on-demand recompute.

Build: embed every passage, build HNSW (hnswlib), take its base layer, prune it (LEANN
Algorithm 3), renumber nodes so neighbours sit close (small varint gaps), train product
quantisation codes, keep exact fp16 vectors for the hubs, and drop the embeddings (unless the
storage mode is "full").

Search (two-level ranking): embed the query once; collect a pool of ``ef`` candidates by code
similarity (graph walk or flat scan, no model calls); score the pool exactly in code-score
order — cached vectors where present, the rest recomputed from passage text in small batches,
one model call per batch — until the remaining candidates cannot plausibly enter the top k
(a margin from the code error calibrated at build time, ``rerank_bound.py``, for the search's
``recall_target``), and order the results by exact score.

Sections (``to_sections``/``from_sections``) use the fixed names in ``SECTION_NAMES``; reading
takes memoryviews of a mapped file and wraps them with ``np.frombuffer`` without copying.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from meshdex.index import csr, model_rotations
from meshdex.index.bundle_format import SECTION_NAMES
from meshdex.index.codes import ProductQuantizer, adc_scores, scan_layout, scan_scores
from meshdex.index.embedder import Embedder, EmbeddingFingerprint
from meshdex.index.errors import (
    BundleCorrupt,
    DeadlineExceeded,
    EmbedderError,
    FailedPrecondition,
    FingerprintMismatch,
    InvalidArgument,
)
from meshdex.index.graph import Adjacency, base_layer, build_hnsw
from meshdex.index.hot_cache import HotCache
from meshdex.index.length_batches import embed_in_length_order
from meshdex.index.params import BuildParams, SearchParams
from meshdex.index.prune import prune, select_heuristic
from meshdex.index.rerank_bound import RerankBound
from meshdex.index.search import CandidatePool, flat_candidates, graph_candidates

logger = logging.getLogger(__name__)

DEFAULT_BUILD_PARAMS = BuildParams()


@dataclass(kw_only=True)
class SearchHit:
    """One result: the passage label and its exact cosine similarity to the query."""

    label: int
    score: float


@dataclass(kw_only=True)
class SearchStats:
    """What one search cost. ``model_calls`` counts every embedder call, the query's included;
    ``nodes_visited`` counts nodes whose code similarity was computed; ``filtered_out`` counts
    candidates turned away by the filter or because they are deleted. ``reranked`` counts
    candidates scored exactly (held vectors and memoised scores included) and ``rerank_stop``
    says why re-ranking stopped there: "bound" (the rest could not plausibly enter the top k),
    "ceiling" (``recompute_fraction`` of the pool), "pool" (every candidate) or "stored
    vectors". ``cache_hits`` counts candidates scored from a held vector (hot, pinned or learned
    cache), ``memo_hits`` those whose score came from the query score memo: a search counts a
    candidate in one of the two at most."""

    passages_recomputed: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    memo_hits: int = 0
    nodes_visited: int = 0
    filtered_out: int = 0
    model_seconds: float = 0.0
    graph_seconds: float = 0.0
    total_seconds: float = 0.0
    strategy: str = ""
    reranked: int = 0
    rerank_stop: str = ""


@dataclass(kw_only=True)
class SearchResult:
    hits: list[SearchHit] = field(default_factory=list)
    stats: SearchStats = field(default_factory=SearchStats)


class VectorCache(Protocol):
    """Exact embeddings kept outside the index (``learned_cache.LearnedCache``), by label.

    ``lookup`` returns ``(hit_mask, float32 vectors of the hits in order)`` and may count the
    hits; ``remember`` is offered, once the search has stopped, the recomputed vectors the
    same query would recompute again, and may keep or ignore them.
    Both raise ``FingerprintMismatch`` for a digest other than the cache's own, so vectors of
    another model are never served. Thread-safe.
    """

    def lookup(self, labels: np.ndarray, fingerprint_digest: str) -> tuple[np.ndarray, np.ndarray]:
        ...

    def remember(self, labels: np.ndarray, vectors: np.ndarray, fingerprint_digest: str) -> None:
        ...


class ScoreMemo(Protocol):
    """Exact scores already computed for a query vector, by label (``score_memo``).

    ``lookup`` returns ``(hit_mask, float32 scores of the hits in order)``; ``remember`` is
    offered every score the search computed that the memo did not give it. Entries are keyed
    by the fingerprint digest too, so scores of another model never hit. Thread-safe.
    """

    def lookup(self, query_vector: np.ndarray, labels: np.ndarray,
               fingerprint_digest: str) -> tuple[np.ndarray, np.ndarray]:
        ...

    def remember(self, query_vector: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 fingerprint_digest: str) -> None:
        ...


class Index:
    """A searchable index over passages identified by uint64 labels (see module docstring)."""

    def __init__(
        self,
        *,
        fingerprint: EmbeddingFingerprint,
        params: BuildParams,
        labels: np.ndarray,
        codes: np.ndarray,
        quantizer: ProductQuantizer,
        entry_points: np.ndarray,
        graph_loader: Callable[[], Adjacency] | None,
        tombstoned: np.ndarray,
        cache: HotCache,
        full_embeddings: np.ndarray | None,
        rerank_bound: RerankBound | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.params = params
        self._labels = labels
        self._codes = codes
        self._scan_layout: np.ndarray | None = None  # codes by byte pair, made on the first scan
        self._quantizer = quantizer
        self._entry_points = entry_points
        self._graph_loader = graph_loader
        self._graph: Adjacency | None = None
        self._edited: dict[int, np.ndarray] = {}  # node -> neighbours, after add()
        self._tombstoned = tombstoned
        self._cache = cache
        self._full = full_embeddings
        self._node_of_label: dict[int, int] | None = None
        self._rerank_bound = rerank_bound

    # ----------------------------------------------------------------- build

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        labels: np.ndarray,
        *,
        embedder: Embedder,
        params: BuildParams = DEFAULT_BUILD_PARAMS,
        progress: Callable[[int, int], None] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> Index:
        """Embed ``texts`` (unless ``embeddings`` are given) and build the index.

        ``labels[i]`` (uint64, unique) identifies ``texts[i]``; ``progress(done, total)`` is
        called as passages are embedded.
        """
        labels = _check_labels(labels, len(texts))
        if len(texts) == 0:
            raise InvalidArgument("nothing to index: no passages", hint="add documents first")
        if embeddings is None:
            vectors = _embed_all(embedder, texts, progress)
        else:
            vectors = _check_vectors(embeddings, len(texts), embedder.dim, "embeddings")
        started = time.monotonic()
        quantizer = ProductQuantizer.train(
            vectors,
            subvectors=params.pq_subvectors,
            bits=params.pq_bits,
            sample=params.pq_train_sample,
            seed=params.seed,
            rotation_iterations=params.pq_rotation_iterations,
            model_rotation=model_rotations.for_model(embedder.fingerprint.model_hash,
                                                     embedder.dim),
        )
        codes = quantizer.encode(vectors)
        rerank_bound = RerankBound.calibrate(vectors, quantizer, codes, seed=params.seed)
        graph: Adjacency | None = None
        entry_points = np.zeros(0, dtype=np.uint32)
        cached = np.zeros(0, dtype=np.int64)
        if len(texts) >= params.graph_min_nodes:
            graph, order = _pruned_graph(vectors, params)
            vectors, labels, codes = vectors[order], labels[order], codes[order]
            by_degree = _nodes_by_degree(graph)
            entry_points = by_degree[: params.entry_point_count].astype(np.uint32)
            cached = by_degree[: params.cache_budget_nodes]
        index = cls(
            fingerprint=embedder.fingerprint,
            params=params,
            labels=labels,
            codes=codes,
            quantizer=quantizer,
            entry_points=entry_points,
            graph_loader=(lambda: graph) if graph is not None else None,
            tombstoned=np.zeros(len(labels), dtype=bool),
            cache=HotCache.from_nodes(embedder.fingerprint.digest(), cached, vectors[cached]),
            full_embeddings=vectors if params.storage_mode == "full" else None,
            rerank_bound=rerank_bound,
        )
        logger.info(
            "indexed %d passages in %.1f s after embedding (%s)",
            len(labels), time.monotonic() - started,
            f"mean degree {graph.degrees().mean():.1f}" if graph is not None
            else f"no graph below {params.graph_min_nodes} passages: flat code scan",
        )
        return index

    # ---------------------------------------------------------------- search

    def search(
        self,
        query: str | np.ndarray,
        k: int,
        *,
        embedder: Embedder,
        texts: Callable[[np.ndarray], list[str]],
        accept: Callable[[int], bool] | None = None,
        params: SearchParams | None = None,
        deadline: float | None = None,
        vector_caches: Sequence[VectorCache] = (),
        score_memo: ScoreMemo | None = None,
    ) -> SearchResult:
        """The ``k`` passages most similar to ``query``, by exact score, with their stats.

        ``texts(labels)`` returns the passage texts to recompute; ``accept(label)`` filters;
        ``deadline`` is a ``time.monotonic()`` value; ``score_memo`` is consulted first, then
        ``vector_caches`` in order, before any passage is recomputed; the memo is offered every
        score computed (by a search the deadline cuts short too), the caches what a repeat
        would recompute. Raises
        ``FingerprintMismatch`` when the embedder differs from the one the index was built
        with, ``DeadlineExceeded`` when the deadline passes.
        """
        started = time.monotonic()
        params = params or SearchParams()
        if not isinstance(k, int) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        self._check_fingerprint(embedder)
        stats = SearchStats()

        def check_deadline(phase: str = "graph search") -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded(
                    f"search deadline passed during {phase}", hint="allow more time or lower ef"
                )

        check_deadline("start")
        query_vector = self._query_vector(query, embedder, stats)
        check_deadline("query embedding")
        if len(self) == 0:
            stats.total_seconds = time.monotonic() - started
            return SearchResult(hits=[], stats=stats)

        graph_started = time.monotonic()
        pool = self._candidates(query_vector, k, params, accept, stats, check_deadline)
        stats.graph_seconds = time.monotonic() - graph_started
        stats.nodes_visited, stats.filtered_out = pool.nodes_scored, pool.rejected
        check_deadline("graph search")

        hits = self._rerank(pool, query_vector, k, params, embedder, texts, stats, check_deadline,
                            vector_caches, score_memo)
        stats.total_seconds = time.monotonic() - started
        return SearchResult(hits=hits, stats=stats)

    def _check_fingerprint(self, embedder: Embedder) -> None:
        theirs = embedder.fingerprint
        if theirs != self.fingerprint:
            raise FingerprintMismatch(
                "the embedder differs from the one this index was built with: "
                + "; ".join(f"index {d}" for d in self.fingerprint.differences(theirs)),
                hint="search with the model the index was built with, or rebuild the index",
            )

    def _query_vector(self, query: str | np.ndarray, embedder: Embedder, stats: SearchStats):
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgument("the query is empty")
            model_started = time.monotonic()
            vector = embedder.embed_query(query)
            stats.model_seconds += time.monotonic() - model_started
            stats.model_calls += 1
            return _check_vectors(np.asarray(vector)[None, :], 1, self.dim, "query embedding")[0]
        return _check_vectors(np.asarray(query)[None, :], 1, self.dim, "query vector")[0]

    def _admit(self, accept: Callable[[int], bool] | None) -> Callable[[int], bool] | None:
        tombstoned, labels = self._tombstoned, self._labels
        if accept is None:
            if not tombstoned.any():
                return None
            return lambda node: not tombstoned[node]
        return lambda node: not tombstoned[node] and bool(accept(int(labels[node])))

    def _candidates(self, query_vector, k, params, accept, stats, check_deadline) -> CandidatePool:
        table = self._quantizer.byte_table(query_vector)
        codes = self._codes
        ef = max(params.ef, k)
        admit = self._admit(accept)
        strategy = params.strategy
        if not self.has_graph:
            strategy = "flat"
        elif strategy == "auto":
            strategy = "flat" if len(self) <= params.flat_max_nodes else "graph"
        stats.strategy = strategy
        if strategy == "flat":
            return flat_candidates(scan_scores(table, self._flat_layout()), ef=ef, admit=admit)
        return graph_candidates(
            neighbors=self._neighbors,
            score=lambda nodes: adc_scores(table, codes[nodes]),
            entry_points=self._entry_points[: params.entry_points],
            node_count=self.node_count,
            ef=ef,
            min_admitted=k,
            admit=admit,
            check_deadline=check_deadline,
            score_all=lambda: scan_scores(table, self._flat_layout()),
        )

    def _flat_layout(self) -> np.ndarray:
        """The codes as ``scan_scores`` reads them: a copy as big as the codes, made once
        (``add`` drops it)."""
        layout = self._scan_layout
        if layout is None:
            layout = self._scan_layout = scan_layout(self._codes)
        return layout

    def _rerank(self, pool, query_vector, k, params, embedder, texts, stats, check_deadline,
                vector_caches, score_memo):
        """Exact scores for the pool's best candidates, in code-score order, until the rest
        cannot plausibly enter the top k (see ``rerank_bound``); results ordered by them.

        Scores the memo holds for this query and held vectors (full storage, the hot cache,
        the vector caches) come first, for free; the others are recomputed ``batch_size`` at
        a time. Before each batch the next candidate's code score is compared with the floor
        the calibrated bound sets from the k-th best exact score so far: at or below it, the
        search stops. ``recompute_fraction`` of the pool is the ceiling either way. A repeated
        query finds every score its first search computed in the memo, so the floor stops it
        where that search stopped: same hits, nothing recomputed.
        """
        count = min(len(pool.nodes), max(k, math.ceil(params.recompute_fraction * len(pool.nodes))))
        chosen = pool.nodes[:count]
        recall_target = self.recall_target(params)
        approx = pool.approx_scores[:count]
        exact = np.full(count, -np.inf, dtype=np.float32)
        if self._full is not None:
            exact[:] = self._full[chosen] @ query_vector
            stats.cache_hits = count
            stats.reranked, stats.rerank_stop = count, "stored vectors"
            return self._best(chosen, exact, k)
        digest = self.fingerprint.digest()
        memoised = np.zeros(count, dtype=bool)
        if score_memo is not None:
            memoised, scores = score_memo.lookup(query_vector, self._labels[chosen], digest)
            exact[memoised] = scores
            stats.memo_hits = int(memoised.sum())
        hit = memoised.copy()
        unknown = np.flatnonzero(~hit)
        found, vectors = self._cache.lookup(chosen[unknown])
        exact[unknown[found]] = vectors @ query_vector
        hit[unknown[found]] = True
        for cache in vector_caches:
            unknown = np.flatnonzero(~hit)
            found, vectors = cache.lookup(self._labels[chosen[unknown]], digest)
            exact[unknown[found]] = vectors @ query_vector
            hit[unknown[found]] = True
        stats.cache_hits = int(hit.sum()) - stats.memo_hits
        missing = np.flatnonzero(~hit)
        # Candidates the bound does not cover are scored first, whatever their code score.
        uncovered = chosen[missing] >= self._covered_nodes()
        missing = np.concatenate([missing[uncovered], missing[~uncovered]])
        first_covered = int(uncovered.sum())
        scored = stats.cache_hits + stats.memo_hits
        stats.rerank_stop = "ceiling"
        recomputed: list[np.ndarray] = []
        try:
            for start in range(0, len(missing), params.batch_size):
                if scored >= k and start >= first_covered:
                    kth = np.partition(exact, count - k)[count - k]
                    if approx[missing[start]] <= self.code_score_floor(kth, recall_target):
                        stats.rerank_stop = "bound"
                        break
                check_deadline("recompute")
                batch = missing[start : start + params.batch_size]
                vectors = self._recompute(chosen[batch], embedder, texts, stats)
                exact[batch] = vectors @ query_vector
                recomputed.append(vectors)
                scored += len(batch)
            else:
                if count == len(pool.nodes):
                    stats.rerank_stop = "pool"
        finally:
            # Also when the deadline cuts the search short: asked again, the question gets
            # what was recomputed before the cut for free.
            if score_memo is not None:
                fresh = np.flatnonzero(np.isfinite(exact) & ~memoised)
                if len(fresh):
                    score_memo.remember(query_vector, self._labels[chosen[fresh]],
                                        exact[fresh], digest)
        stats.reranked = scored
        best = self._best(chosen, exact, k)
        if recomputed and vector_caches:
            done = missing[: sum(len(v) for v in recomputed)]
            keep = self._needed_again(done, approx, exact, k, count, recall_target)
            kept = np.concatenate(recomputed)[keep]
            for cache in vector_caches:
                cache.remember(self._labels[chosen[done[keep]]], kept, digest)
        return best

    def _needed_again(self, done, approx, exact, k, count, recall_target) -> np.ndarray:
        """Which of the recomputed candidates ``done`` the same query would recompute again:
        those in the top k, and those whose code score is above the floor the final k-th
        best score sets. The rest were recomputed only because the k-th best score was still
        low when their batch ran; offering them to a cache would crowd out what a repeat
        needs (issue 12: the warm pass recomputed 97% of the cold one)."""
        if count < k:
            return np.ones(len(done), dtype=bool)
        kth = np.partition(exact, count - k)[count - k]
        return (approx[done] > self.code_score_floor(kth, recall_target)) | (exact[done] >= kth)

    def _recompute(self, nodes, embedder, texts, stats) -> np.ndarray:
        """Exact embeddings of ``nodes`` from their passage text: one model call."""
        labels = self._labels[nodes]
        passages = texts(labels)
        if len(passages) != len(nodes):
            raise InvalidArgument(
                f"texts() returned {len(passages)} passages for {len(nodes)} labels"
            )
        model_started = time.monotonic()
        vectors = embedder.embed_documents(passages)
        stats.model_seconds += time.monotonic() - model_started
        stats.model_calls += 1
        stats.passages_recomputed += len(nodes)
        return _check_vectors(vectors, len(nodes), self.dim, "recomputed embeddings")

    def _best(self, chosen: np.ndarray, exact: np.ndarray, k: int) -> list[SearchHit]:
        scored = np.flatnonzero(np.isfinite(exact))
        order = scored[np.argsort(-exact[scored], kind="stable")][:k]
        return [SearchHit(label=int(self._labels[chosen[i]]), score=float(exact[i])) for i in order]

    def recall_target(self, params: SearchParams) -> float:
        """The search's ``recall_target``, or without one the default for these codes."""
        if params.recall_target is not None:
            return params.recall_target
        return self._quantizer.default_recall_target

    def code_score_floor(self, kth: float, recall_target: float) -> float:
        """Re-ranking stops at a candidate whose code score is at or below this, given the
        k-th best exact score so far (``RerankBound.code_score_floor``); minus infinity (never
        stop before the ceiling) without a calibrated bound or for a target of 1."""
        if self._covered_nodes() == 0 or recall_target >= 1.0:
            return -math.inf
        return self._rerank_bound.code_score_floor(kth, recall_target)

    def _covered_nodes(self) -> int:
        """Nodes whose codes the bound was measured on (0 without a bound that says)."""
        return self._rerank_bound.covered_nodes if self._rerank_bound is not None else 0

    # ------------------------------------------------------------ add/remove

    def add(self, texts: Sequence[str], labels: np.ndarray, *, embedder: Embedder) -> None:
        """Insert passages without a rebuild: embed them, find neighbours with the engine's own
        candidate search (codes, exact where cached), link them with the pruned degree ``m``
        and add back edges (up to ``M``; a full list swaps out its least similar edge).

        The re-rank bound does not cover the new nodes (``RerankBound.covered_nodes``): codes of
        passages the codebook never saw can undershoot their exact scores by far more, so a
        search always scores the inserted passages among its candidates."""
        self._check_fingerprint(embedder)
        labels = _check_labels(labels, len(texts))
        live = self._live_labels()
        clashes = [int(x) for x in labels if int(x) in live]
        if clashes:
            raise InvalidArgument(
                f"{len(clashes)} labels are already in the index (e.g. {clashes[0]})",
                hint="remove them first to replace their passages",
            )
        if len(texts) == 0:
            return
        if self.has_graph:
            self._graph_or_load()  # decode the stored graph before the id map grows
        vectors = _embed_all(embedder, texts, None)
        first_new = self.node_count
        new_codes = self._quantizer.encode(vectors)
        self._codes = np.concatenate([self._codes, new_codes])
        self._scan_layout = None
        self._labels = np.concatenate([self._labels, labels])
        self._tombstoned = np.concatenate([self._tombstoned, np.zeros(len(labels), dtype=bool)])
        if self._full is not None:
            self._full = np.concatenate([self._full, vectors])
        if self.has_graph:
            for offset, vector in enumerate(vectors):
                self._link_new_node(first_new + offset, vector)
        self._node_of_label = None

    def _link_new_node(self, node: int, vector: np.ndarray) -> None:
        params = self.params
        table = self._quantizer.byte_table(vector)
        pool = graph_candidates(
            neighbors=self._neighbors,
            score=lambda nodes: adc_scores(table, self._codes[nodes]),
            entry_points=self._entry_points,
            node_count=node,  # nodes added after this one are not linked yet
            ef=params.ef_construction,
            min_admitted=params.pruned_degree,
            admit=None,
            check_deadline=lambda: None,
        )
        candidates = pool.nodes
        local = np.concatenate([vector[None, :], self._approx_vectors(candidates)])
        chosen = candidates[
            select_heuristic(0, np.arange(1, len(local)), local, params.pruned_degree) - 1
        ]
        self._edited[node] = np.sort(chosen)
        for other in chosen.tolist():
            self._link_back(other, node, vector)

    def _link_back(self, node: int, new: int, new_vector: np.ndarray) -> None:
        current = self._neighbors(node)
        if len(current) < self.params.M:
            self._edited[node] = np.sort(np.append(current, new))
            return
        own = self._approx_vectors(np.array([node]))[0]
        similarity = self._approx_vectors(current) @ own
        weakest = int(np.argmin(similarity))
        if float(new_vector @ own) > similarity[weakest]:
            replaced = current.copy()
            replaced[weakest] = new
            self._edited[node] = np.sort(replaced)

    def _approx_vectors(self, nodes: np.ndarray) -> np.ndarray:
        """Best vectors we hold without a model call: full or cached, else reconstructed."""
        if self._full is not None:
            return self._full[nodes]
        vectors = self._quantizer.reconstruct(self._codes[nodes])
        hit, cached = self._cache.lookup(nodes)
        vectors[hit] = cached
        return vectors

    def remove(self, labels: np.ndarray) -> int:
        """Tombstone the nodes with these labels; returns how many were live. Tombstoned nodes
        are still walked through but never returned."""
        node_of_label = self._label_lookup()
        removed = 0
        for label in np.asarray(labels, dtype=np.uint64).tolist():
            node = node_of_label.get(label)
            if node is not None and not self._tombstoned[node]:
                self._tombstoned[node] = True
                removed += 1
        return removed

    def without_tombstones(self) -> Index:
        """This index with its tombstoned nodes dropped for good, nothing re-embedded.

        Only an index without a graph: its nodes are independent rows of codes, so dropping
        some renumbers the rest and leaves every search result as it was. A graph routes
        through tombstoned nodes, so dropping them needs a rebuild (``FailedPrecondition``).
        """
        if self.has_graph:
            raise FailedPrecondition("tombstoned nodes of a graph index are only dropped "
                                     "by a rebuild", hint="meshdex build --rebuild")
        live = ~self._tombstoned
        new_node = np.cumsum(live) - 1
        cache_kept = live[self._cache.node_ids]
        cache = HotCache(fingerprint_digest=self._cache.fingerprint_digest,
                         node_ids=new_node[self._cache.node_ids[cache_kept]].astype(np.uint32),
                         vectors=self._cache.vectors[cache_kept])
        return Index(
            fingerprint=self.fingerprint,
            params=self.params,
            labels=self._labels[live],
            codes=self._codes[live],
            quantizer=self._quantizer,
            entry_points=np.zeros(0, dtype=np.uint32),
            graph_loader=None,
            tombstoned=np.zeros(int(live.sum()), dtype=bool),
            cache=cache,
            full_embeddings=self._full[live] if self._full is not None else None,
            rerank_bound=self._rerank_bound and replace(
                self._rerank_bound,
                covered_nodes=int(live[: self._rerank_bound.covered_nodes].sum())),
        )

    def __len__(self) -> int:
        return int(self.node_count - np.count_nonzero(self._tombstoned))

    @property
    def node_count(self) -> int:
        """Nodes in the graph, tombstoned ones included."""
        return len(self._labels)

    @property
    def dim(self) -> int:
        return self.fingerprint.dim

    @property
    def cache_fingerprint_digest(self) -> str:
        """Digest of the fingerprint the hot cache was computed with (for the bundle manifest)."""
        return self._cache.fingerprint_digest

    @property
    def cache_node_count(self) -> int:
        return len(self._cache)

    @property
    def rerank_bound(self) -> RerankBound | None:
        """The code-score error calibrated at build time (None: an index from before it)."""
        return self._rerank_bound

    def labels(self, *, live_only: bool = True) -> np.ndarray:
        """Labels of the nodes (live ones only by default)."""
        return self._labels[~self._tombstoned] if live_only else self._labels.copy()

    def _live_labels(self) -> set[int]:
        return set(self._labels[~self._tombstoned].tolist())

    def _label_lookup(self) -> dict[int, int]:
        if self._node_of_label is None:
            self._node_of_label = {label: node for node, label in enumerate(self._labels.tolist())}
        return self._node_of_label

    # ------------------------------------------------------------------ graph

    @property
    def has_graph(self) -> bool:
        """False for an index built below ``BuildParams.graph_min_nodes``: it scans codes."""
        return self._graph_loader is not None

    def _graph_or_load(self) -> Adjacency:
        if self._graph_loader is None:
            raise FailedPrecondition(
                f"this index of {self.node_count} passages has no graph (built below "
                f"graph_min_nodes={self.params.graph_min_nodes})",
                hint="rebuild with --param graph_min_nodes=0 to store one",
            )
        if self._graph is None:
            try:
                self._graph = self._graph_loader()
            except InvalidArgument as error:
                raise BundleCorrupt(f"graph sections are malformed: {error.message}") from error
            if self._graph.node_count != self.node_count:
                raise BundleCorrupt(
                    f"graph has {self._graph.node_count} nodes, the id map {self.node_count}"
                )
        return self._graph

    def _neighbors(self, node: int) -> np.ndarray:
        edited = self._edited.get(node)
        if edited is not None:
            return edited
        return self._graph_or_load().neighbors(node)

    def graph(self) -> Adjacency:
        """The current adjacency (after any adds), decoded."""
        graph = self._graph_or_load()
        if not self._edited:
            return graph
        return Adjacency.from_lists([self._neighbors(v) for v in range(self.node_count)])

    # --------------------------------------------------------------- sections

    def to_sections(self) -> dict[str, bytes]:
        """The index as named byte sections (names from ``SECTION_NAMES``)."""
        sections = {
            "codes": np.ascontiguousarray(self._codes).tobytes(),
            "codebook": self._quantizer.to_bytes(),
            "id_map": self._labels.astype("<u8").tobytes(),
            "tombstones": np.flatnonzero(self._tombstoned).astype("<u4").tobytes(),
            **self._cache.to_sections(),
        }
        if self.has_graph:
            offsets, neighbors = csr.encode(self.graph())
            sections["graph_offsets"] = offsets
            sections["graph_neighbors"] = neighbors
            sections["entry_points"] = self._entry_points.astype("<u4").tobytes()
        if self._full is not None:
            sections["full_embeddings"] = self._full.astype("<f4").tobytes()
        return sections

    @classmethod
    def from_sections(
        cls,
        sections: Mapping[str, memoryview | bytes],
        *,
        fingerprint: EmbeddingFingerprint,
        params: BuildParams,
        rerank_bound: RerankBound | None = None,
    ) -> Index:
        """Open an index from its sections without copying the big arrays; ``rerank_bound``
        comes from the bundle manifest.

        Malformed sections raise ``BundleCorrupt``; a hot cache computed under another
        fingerprint is dropped (logged), the rest of the index stays usable.
        """
        unknown = sorted(set(sections) - set(SECTION_NAMES))
        if unknown:
            raise BundleCorrupt(f"unknown index sections: {', '.join(unknown)}")
        graph_names = ("graph_offsets", "graph_neighbors", "entry_points")
        has_graph = any(name in sections for name in graph_names)
        required = ("codes", "codebook", "id_map", *(graph_names if has_graph else ()))
        missing = [name for name in required if name not in sections]
        if missing:
            raise BundleCorrupt(f"index sections missing: {', '.join(missing)}")
        dim = fingerprint.dim
        labels = _frombuffer(sections["id_map"], "<u8", "id_map")
        n = len(labels)
        code_bytes = params.code_bytes
        codes = np.frombuffer(sections["codes"], dtype=np.uint8)
        if codes.size != n * code_bytes:
            raise BundleCorrupt(
                f"codes section holds {codes.size} bytes, expected {n} × {code_bytes}"
            )
        try:
            quantizer = ProductQuantizer.from_bytes(
                sections["codebook"], subvectors=params.pq_subvectors, bits=params.pq_bits, dim=dim
            )
        except InvalidArgument as error:
            raise BundleCorrupt(error.message) from error
        entry_points = _frombuffer(sections.get("entry_points", b""), "<u4", "entry_points")
        if has_graph and n and (len(entry_points) == 0 or int(entry_points.max()) >= n):
            raise BundleCorrupt("entry points are missing or out of range")
        tombstoned = np.zeros(n, dtype=bool)
        tomb_ids = _frombuffer(sections.get("tombstones", b""), "<u4", "tombstones")
        if len(tomb_ids) and int(tomb_ids.max()) >= n:
            raise BundleCorrupt("tombstone node id out of range")
        tombstoned[tomb_ids] = True
        cache = _read_cache(sections, fingerprint, dim, n)
        full = None
        if params.storage_mode == "full":
            if "full_embeddings" not in sections:
                raise BundleCorrupt("storage mode is 'full' but full_embeddings is missing")
            full = _frombuffer(sections["full_embeddings"], "<f4", "full_embeddings")
            if full.size != n * dim:
                raise BundleCorrupt(
                    f"full_embeddings holds {full.size} values, expected {n} × {dim}"
                )
            full = full.reshape(n, dim)
        graph_loader = None
        if has_graph:
            offsets, neighbors = sections["graph_offsets"], sections["graph_neighbors"]

            def graph_loader() -> Adjacency:
                return csr.decode(offsets, neighbors)

        return cls(
            fingerprint=fingerprint,
            params=params,
            labels=labels,
            codes=codes.reshape(n, code_bytes),
            quantizer=quantizer,
            entry_points=entry_points,
            graph_loader=graph_loader,
            tombstoned=tombstoned,
            cache=cache,
            full_embeddings=full,
            rerank_bound=rerank_bound,
        )


def _read_cache(sections, fingerprint: EmbeddingFingerprint, dim: int, n: int) -> HotCache:
    if "cache_ids" not in sections:
        return HotCache.empty(fingerprint.digest(), dim)
    try:
        cache = HotCache.from_sections(
            sections["cache_ids"], sections.get("cache_vectors", b""), dim=dim, node_count=n
        )
    except InvalidArgument as error:
        raise BundleCorrupt(error.message) from error
    if cache.fingerprint_digest != fingerprint.digest():
        logger.warning("dropping the hot cache: it was computed with another embedding fingerprint")
        return HotCache.empty(fingerprint.digest(), dim)
    return cache


def _frombuffer(data: bytes | memoryview, dtype: str, name: str) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    if len(data) % itemsize:
        raise BundleCorrupt(f"section {name} has {len(data)} bytes, not a multiple of {itemsize}")
    return np.frombuffer(data, dtype=dtype)


def _pruned_graph(vectors: np.ndarray, params: BuildParams) -> tuple[Adjacency, np.ndarray]:
    """HNSW base layer, pruned (LEANN Algorithm 3) and renumbered for locality, and the new
    node order (``order[new] = old``)."""
    hnsw = build_hnsw(vectors, M=params.M, ef_construction=params.ef_construction,
                      seed=params.seed)
    base = base_layer(hnsw)
    del hnsw
    pruned, _ = prune(
        base, vectors, M=params.M, m=params.pruned_degree, hub_fraction=params.hub_fraction
    )
    order = csr.locality_order(pruned)
    return csr.renumber(pruned, order), order


def _nodes_by_degree(adjacency: Adjacency) -> np.ndarray:
    """Node ids by in + out degree, highest first (hubs: entry points and cache)."""
    degree = adjacency.degrees() + np.bincount(adjacency.indices, minlength=adjacency.node_count)
    return np.argsort(-degree, kind="stable")


def _check_labels(labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype != np.uint64:
        raise InvalidArgument(f"labels must be uint64, got {labels.dtype}")
    if labels.shape != (count,):
        raise InvalidArgument(
            f"expected {count} labels (one per passage), got shape {labels.shape}"
        )
    if len(np.unique(labels)) != count:
        raise InvalidArgument("labels must be unique")
    return labels


def _check_vectors(vectors: np.ndarray, count: int, dim: int, what: str) -> np.ndarray:
    """Unit-norm float32 rows, or ``EmbedderError``: never zero or non-finite vectors."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (count, dim):
        raise EmbedderError(f"{what} have shape {vectors.shape}, expected ({count}, {dim})")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(vectors)) or np.any(norms < 1e-6):
        raise EmbedderError(f"{what} contain zero or non-finite vectors")
    return vectors / norms[:, None]


def _embed_all(
    embedder: Embedder, texts: Sequence[str], progress: Callable[[int, int], None] | None
) -> np.ndarray:
    vectors = embed_in_length_order(embedder, texts, progress)
    return _check_vectors(vectors, len(texts), embedder.dim, "passage embeddings")
