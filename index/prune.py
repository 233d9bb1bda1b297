"""High-degree-preserving graph pruning (LEANN, Algorithm 3).

The top ``hub_fraction`` of nodes by degree (in + out) keep up to ``M`` out-edges, every other
node selects at most ``m``. Selection uses HNSW's neighbour heuristic on the node's own base-layer
list (LEANN re-searches each node with ``ef``; the base-layer list hnswlib built is that search's
result already). Edges are then made bidirectional, so any node may accept back edges, and a
node left with more than ``M`` keeps its ``M`` closest. Hubs stay well connected and act as
highways; the rest of the graph shrinks to about ``m`` edges per node.
"""

from __future__ import annotations

import numpy as np
from meshdex.index.graph import Adjacency


def hub_nodes(adjacency: Adjacency, hub_fraction: float) -> np.ndarray:
    """Node ids of the top ``hub_fraction`` of nodes by in + out degree, highest first."""
    n = adjacency.node_count
    degree = adjacency.degrees() + np.bincount(adjacency.indices, minlength=n)
    hub_count = int(np.ceil(hub_fraction * n)) if hub_fraction > 0 else 0
    order = np.argsort(-degree, kind="stable")
    return order[:hub_count]


def select_heuristic(
    node: int, candidates: np.ndarray, vectors: np.ndarray, limit: int
) -> np.ndarray:
    """HNSW's diversity heuristic: take candidates nearest first, keeping one only if it is
    closer to ``node`` than to every neighbour already kept; top up with the nearest skipped
    ones when fewer than ``limit`` survive (keeps sparse regions connected)."""
    if len(candidates) <= 1 or limit <= 0:
        return candidates[:limit]
    cand_vectors = vectors[candidates]
    similarity_to_node = cand_vectors @ vectors[node]
    order = np.argsort(-similarity_to_node, kind="stable")
    candidates, cand_vectors = candidates[order], cand_vectors[order]
    similarity_to_node = similarity_to_node[order]
    pairwise = cand_vectors @ cand_vectors.T
    kept: list[int] = []
    skipped: list[int] = []
    for i in range(len(candidates)):
        if len(kept) >= limit:
            break
        if all(pairwise[i, j] < similarity_to_node[i] for j in kept):
            kept.append(i)
        else:
            skipped.append(i)
    kept.extend(skipped[: limit - len(kept)])
    return candidates[np.sort(np.asarray(kept, dtype=np.int64))]


def prune(
    adjacency: Adjacency, vectors: np.ndarray, *, M: int, m: int, hub_fraction: float
) -> tuple[Adjacency, np.ndarray]:
    """Prune ``adjacency`` (LEANN Algorithm 3); returns the pruned graph and its hubs.

    ``vectors`` are the unit-norm embeddings the graph was built from (similarity = dot).
    """
    n = adjacency.node_count
    hubs = hub_nodes(adjacency, hub_fraction)
    is_hub = np.zeros(n, dtype=bool)
    is_hub[hubs] = True
    out: list[set[int]] = [set() for _ in range(n)]
    for v in range(n):
        candidates = adjacency.neighbors(v)
        candidates = candidates[candidates != v]
        chosen = select_heuristic(v, candidates, vectors, M if is_hub[v] else m)
        for u in chosen.tolist():
            out[v].add(u)
            out[u].add(v)
    lists: list[np.ndarray] = []
    for v in range(n):
        neighbours = np.fromiter(out[v], dtype=np.int64, count=len(out[v]))
        if len(neighbours) > M:
            similarity = vectors[neighbours] @ vectors[v]
            neighbours = neighbours[np.argsort(-similarity, kind="stable")[:M]]
        lists.append(np.sort(neighbours))
    return Adjacency.from_lists(lists), hubs
