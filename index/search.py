"""Candidate generation by approximate (code) similarity: best-first graph walk or flat scan.

Both strategies return a pool of up to ``ef`` admitted nodes ordered by approximate similarity;
the engine then re-ranks the best of them exactly. No model call happens here.

Filters and deletions: ``admit(node)`` decides whether a node may enter the pool. The walk still
passes *through* rejected nodes, and the stopping rule only looks at admitted ones, so a
selective filter makes the walk go further instead of returning fewer results. If the walk ends
with fewer than ``min_admitted`` nodes (the graph region it can reach holds too few matches),
the codes of every unvisited node are scanned as well: when ``k`` matches exist, ``k`` come back.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEADLINE_CHECK_EVERY_EXPANSIONS = 64
FLAT_WINDOW_GROWTH = 4  # flat_candidates with a filter: first window ef x this, then x this


@dataclass(frozen=True, kw_only=True)
class CandidatePool:
    """Admitted nodes, best approximate similarity first, and what it cost to find them."""

    nodes: np.ndarray  # int64
    approx_scores: np.ndarray  # float32
    nodes_scored: int  # nodes whose code similarity was computed
    rejected: int  # nodes ``admit`` turned away


class _Pool:
    """Bounded min-heap of the best ``capacity`` admitted (score, node) pairs."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.heap: list[tuple[float, int]] = []

    def full(self) -> bool:
        return len(self.heap) >= self.capacity

    def worst(self) -> float:
        return self.heap[0][0]

    def offer(self, score: float, node: int) -> None:
        if not self.full():
            heapq.heappush(self.heap, (score, node))
        elif score > self.heap[0][0]:
            heapq.heapreplace(self.heap, (score, node))

    def result(self, nodes_scored: int, rejected: int) -> CandidatePool:
        """The pool best first, ties by node id, as ``flat_candidates`` orders an unfiltered
        pool: an index and its copy without tombstones rank equal scores alike."""
        ordered = sorted(self.heap, key=lambda pair: (-pair[0], pair[1]))
        count = len(ordered)
        return CandidatePool(
            nodes=np.fromiter((n for _, n in ordered), dtype=np.int64, count=count),
            approx_scores=np.fromiter((s for s, _ in ordered), dtype=np.float32, count=count),
            nodes_scored=nodes_scored,
            rejected=rejected,
        )


def flat_candidates(
    scores: np.ndarray, *, ef: int, admit: Callable[[int], bool] | None
) -> CandidatePool:
    """The ``ef`` best admitted nodes given every node's approximate similarity.

    With ``admit``, nodes are offered best first (ties by node id) until ``ef`` are admitted
    (``_offer_best_first``: from a window of the best that grows while the pool is short, as
    the graph walk's scan of the nodes it did not reach does too). Sorting every score
    first, as this did before, took 271 ms at 1M nodes (the window: 12 ms, one filter
    admitting one node in ten, the same run), six times the scan, for any filter or a single
    tombstone; ``bench/results/scan.md`` has the whole candidate step with a filter.
    """
    if admit is None:
        best = _best_first(scores, min(ef, len(scores)))
        return CandidatePool(
            nodes=best.astype(np.int64),
            approx_scores=scores[best].astype(np.float32),
            nodes_scored=len(scores),
            rejected=0,
        )
    pool = _Pool(ef)
    rejected = _offer_best_first(pool, scores, admit)
    return pool.result(len(scores), rejected)


def _offer_best_first(pool: _Pool, scores: np.ndarray, admit: Callable[[int], bool],
                      nodes: np.ndarray | None = None) -> int:
    """Offer nodes to ``pool`` best score first (ties by position) until it is full, from a
    window of the best ``FLAT_WINDOW_GROWTH`` times its capacity that grows by that factor
    while it is short; how many ``admit`` turned away. ``scores[i]`` is the score of node
    ``nodes[i]`` (of node ``i`` without ``nodes``)."""
    rejected = offered = 0
    window = min(len(scores), FLAT_WINDOW_GROWTH * pool.capacity)
    while not pool.full() and offered < len(scores):
        for position in _best_first(scores, window)[offered:].tolist():
            if pool.full():
                break
            node = position if nodes is None else int(nodes[position])
            if admit(node):
                pool.offer(float(scores[position]), node)
            else:
                rejected += 1
        offered = window
        window = min(len(scores), window * FLAT_WINDOW_GROWTH)
    return rejected


def _best_first(scores: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` nodes of a stable descending sort of ``scores`` (ties by node id),
    without sorting the rest: one partition finds the ``count``-th best score."""
    if count >= len(scores):
        return np.argsort(-scores, kind="stable")
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(scores, len(scores) - count)[len(scores) - count]
    above = np.flatnonzero(scores > threshold)
    # Every node above the threshold scores higher than every tied one, so the stable sort
    # of the two runs, each in node order, orders ties by node id.
    chosen = np.concatenate([above, np.flatnonzero(scores == threshold)[: count - len(above)]])
    return chosen[np.argsort(-scores[chosen], kind="stable")]


def graph_candidates(
    *,
    neighbors: Callable[[int], np.ndarray],
    score: Callable[[np.ndarray], np.ndarray],
    entry_points: np.ndarray,
    node_count: int,
    ef: int,
    min_admitted: int,
    admit: Callable[[int], bool] | None,
    check_deadline: Callable[[], None],
    score_all: Callable[[], np.ndarray] | None = None,
) -> CandidatePool:
    """Best-first search (HNSW's base-layer search) by approximate similarity.

    ``score(nodes)`` returns the approximate similarities of an array of node ids;
    ``score_all()``, if given, those of every node in node order, for the scan of the nodes
    the walk did not reach: the flat scan's byte-pair gather scores all 1M codes faster than
    ``score`` gathers the ones a walk left (46-53 ms against 340-390 ms, 32-byte codes).
    """
    admit = admit or (lambda node: True)
    visited = np.zeros(node_count, dtype=bool)
    pool = _Pool(ef)
    frontier: list[tuple[float, int]] = []  # max-heap via negated scores
    rejected = 0
    scored = 0

    def consider(nodes: np.ndarray) -> None:
        nonlocal rejected, scored
        visited[nodes] = True
        similarities = score(nodes)
        scored += len(nodes)
        for node, similarity in zip(nodes.tolist(), similarities.tolist(), strict=True):
            if pool.full() and similarity <= pool.worst():
                continue
            heapq.heappush(frontier, (-similarity, node))
            if admit(node):
                pool.offer(similarity, node)
            else:
                rejected += 1

    starts = np.unique(np.asarray(entry_points, dtype=np.int64))
    consider(starts[starts < node_count])
    expansions = 0
    while frontier:
        negated, node = heapq.heappop(frontier)
        if pool.full() and -negated < pool.worst():
            break
        fresh = neighbors(node)
        fresh = fresh[~visited[fresh]]
        if len(fresh):
            consider(fresh)
        expansions += 1
        if expansions % DEADLINE_CHECK_EVERY_EXPANSIONS == 0:
            check_deadline()
    if len(pool.heap) < min_admitted and not visited.all():
        unvisited = np.flatnonzero(~visited)
        similarities = score_all()[unvisited] if score_all is not None else score(unvisited)
        scored += len(unvisited)
        rejected += _offer_best_first(pool, similarities, admit, unvisited)
    return pool.result(scored, rejected)
