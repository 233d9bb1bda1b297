"""LEANN's high-degree-preserving pruning: hubs keep their edges, everyone else shrinks to m,
no node exceeds M, and the graph stays walkable."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from meshdex.index.graph import base_layer, build_hnsw
from meshdex.index.prune import hub_nodes, prune

M = 24


@pytest.fixture(scope="module")
def graph_and_vectors():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, 32))
    points = centres[rng.integers(0, 20, 1500)] + 0.5 * rng.normal(size=(1500, 32))
    vectors = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    return base_layer(build_hnsw(vectors, M=M, ef_construction=100, seed=0)), vectors


def _reachable(adjacency, starts) -> int:
    seen = np.zeros(adjacency.node_count, dtype=bool)
    queue = deque(int(s) for s in starts)
    seen[list(queue)] = True
    while queue:
        for u in adjacency.neighbors(queue.popleft()).tolist():
            if not seen[u]:
                seen[u] = True
                queue.append(u)
    return int(seen.sum())


@pytest.mark.parametrize("m", [4, 8, 12])
def test_pruning_respects_degrees_and_keeps_hubs(graph_and_vectors, m):
    original, vectors = graph_and_vectors
    pruned, hubs = prune(original, vectors, M=M, m=m, hub_fraction=0.05)
    degrees = pruned.degrees()
    is_hub = np.zeros(pruned.node_count, dtype=bool)
    is_hub[hubs] = True
    assert len(hubs) == int(np.ceil(0.05 * pruned.node_count))
    assert degrees.max() <= M
    assert pruned.indices.size < original.indices.size  # it did prune
    # Hubs keep (up to M) far more edges than the typical node.
    assert np.median(degrees[is_hub]) > np.median(degrees[~is_hub])
    assert np.median(degrees[~is_hub]) <= 2 * m
    # Every kept edge comes from the original graph, in one direction or the other.
    original_edges = {(v, int(u)) for v in range(original.node_count)
                      for u in original.neighbors(v)}
    for v in range(pruned.node_count):
        for u in pruned.neighbors(v).tolist():
            assert (v, u) in original_edges or (u, v) in original_edges


def test_hubs_are_the_highest_degree_nodes(graph_and_vectors):
    original, _ = graph_and_vectors
    degree = original.degrees() + np.bincount(original.indices, minlength=original.node_count)
    hubs = hub_nodes(original, 0.02)
    others = np.setdiff1d(np.arange(original.node_count), hubs)
    assert degree[hubs].min() >= degree[others].max()


def test_pruned_graph_stays_reachable_from_hubs(graph_and_vectors):
    original, vectors = graph_and_vectors
    pruned, hubs = prune(original, vectors, M=M, m=6, hub_fraction=0.02)
    assert _reachable(pruned, hubs[:4]) == pruned.node_count
