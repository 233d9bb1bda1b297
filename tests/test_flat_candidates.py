"""The flat scan's pool: the ef best admitted nodes, best first, whatever the filter admits.

``flat_candidates`` offers nodes from a growing window of the best instead of sorting every
score; these tests hold it to what a full stable sort gives, with scores full of ties (equal
codes score equally: duplicate passages are common) so that ties straddle every window edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from meshdex.index.search import FLAT_WINDOW_GROWTH, flat_candidates, graph_candidates

NODES = 5_000


def _sorted_everything(scores: np.ndarray, ef: int, admit) -> tuple[list[int], int]:
    """The reference: every node in a stable descending sort, offered until ef admitted."""
    admitted, rejected = [], 0
    for node in np.argsort(-scores, kind="stable").tolist():
        if len(admitted) == ef:
            break
        if admit(node):
            admitted.append(node)
        else:
            rejected += 1
    return admitted, rejected


@pytest.fixture(scope="module")
def tied_scores() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 40, NODES).astype(np.float32)


FILTERS = {
    "every node": lambda node: True,
    "one in three": lambda node: node % 3 == 0,
    "one in 700": lambda node: node % 700 == 1,
    "only the last node": lambda node: node == NODES - 1,
    "no node": lambda node: False,
}


@pytest.mark.parametrize("ef", [1, 10, 80])
@pytest.mark.parametrize("name", list(FILTERS))
def test_a_filtered_pool_holds_the_nodes_a_full_sort_would_admit(tied_scores, ef, name):
    admit = FILTERS[name]
    pool = flat_candidates(tied_scores, ef=ef, admit=admit)
    admitted, rejected = _sorted_everything(tied_scores, ef, admit)
    assert pool.nodes.tolist() == admitted  # best first, ties by node id
    assert pool.rejected == rejected
    assert pool.nodes_scored == NODES
    np.testing.assert_array_equal(pool.approx_scores, tied_scores[pool.nodes])


def test_a_selective_filter_widens_the_window_until_the_pool_is_full(tied_scores):
    """Matches far down the ranking (past several window growths) are still found, each
    node offered to the filter once."""
    ef = 5
    offered: list[int] = []
    matches = set(np.argsort(-tied_scores, kind="stable")[-ef:].tolist())

    def admit(node: int) -> bool:
        offered.append(node)
        return node in matches

    pool = flat_candidates(tied_scores, ef=ef, admit=admit)
    assert set(pool.nodes.tolist()) == matches
    assert len(offered) == len(set(offered)) == NODES
    assert NODES > ef * FLAT_WINDOW_GROWTH ** 3


def test_an_unfiltered_pool_is_the_ef_best_ties_by_node_id(tied_scores):
    pool = flat_candidates(tied_scores, ef=80, admit=None)
    expected = np.argsort(-tied_scores, kind="stable")[:80]
    np.testing.assert_array_equal(pool.nodes, expected)
    assert pool.rejected == 0


@pytest.mark.parametrize("count", [0, 1, 3])
def test_fewer_nodes_than_ef_give_every_admitted_node(count):
    scores = np.arange(count, dtype=np.float32)
    assert flat_candidates(scores, ef=8, admit=None).nodes.tolist() == list(range(count))[::-1]
    assert flat_candidates(scores, ef=8, admit=lambda node: node != 1).nodes.tolist() == [
        node for node in range(count)[::-1] if node != 1]


def test_a_walk_that_finds_too_few_matches_scans_the_rest_with_one_full_scan(tied_scores):
    """The walk's fallback takes the unvisited nodes' scores from ``score_all`` (the flat
    scan) instead of gathering them through ``score``, and keeps the same pool."""
    half = NODES // 2  # a ring over the first half: the walk never reaches the second
    ring = [np.array([(node - 1) % half, (node + 1) % half]) for node in range(half)]
    admit = FILTERS["only the last node"]
    gathered: list[int] = []

    def score(nodes: np.ndarray) -> np.ndarray:
        gathered.append(len(nodes))
        return tied_scores[nodes]

    def walk(score_all):
        return graph_candidates(
            neighbors=ring.__getitem__, score=score, entry_points=np.array([0]),
            node_count=NODES, ef=8, min_admitted=5, admit=admit,
            check_deadline=lambda: None, score_all=score_all)

    by_gather = walk(None)
    assert max(gathered) == NODES - half  # the fallback gathered the unvisited nodes
    gathered.clear()
    by_scan = walk(lambda: tied_scores.copy())
    assert max(gathered) <= 2, "the fallback still gathered the unvisited nodes"
    assert np.array_equal(by_scan.nodes, by_gather.nodes)
    assert np.array_equal(by_scan.approx_scores, by_gather.approx_scores)
    assert (by_scan.nodes_scored, by_scan.rejected) == (by_gather.nodes_scored,
                                                         by_gather.rejected)
    assert by_scan.nodes.tolist() == [NODES - 1]
