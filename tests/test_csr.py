"""CSR adjacency with delta + varint packing round-trips exactly and refuses damaged bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshdex.index import csr
from meshdex.index.errors import InvalidArgument
from meshdex.index.graph import Adjacency


@st.composite
def adjacencies(draw):
    n = draw(st.integers(min_value=1, max_value=60))
    lists = [
        np.array(sorted(draw(st.sets(st.integers(0, n - 1), max_size=min(n, 12)))), dtype=np.int64)
        for _ in range(n)
    ]
    return Adjacency.from_lists(lists)


@settings(max_examples=200, deadline=None)
@given(adjacencies())
def test_encode_decode_round_trips(adjacency):
    offsets, neighbors = csr.encode(adjacency)
    decoded = csr.decode(memoryview(offsets), memoryview(neighbors))
    assert np.array_equal(decoded.offsets, adjacency.offsets)
    assert np.array_equal(decoded.indices, adjacency.indices)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=50))
def test_varints_round_trip(values):
    array = np.array(values, dtype=np.uint64)
    assert csr.varint_decode(csr.varint_encode(array)).tolist() == values


def test_unsorted_lists_come_back_sorted():
    adjacency = Adjacency.from_lists([np.array([2, 1]), np.array([0]), np.array([1, 0])])
    decoded = csr.decode(*csr.encode(adjacency))
    assert [decoded.neighbors(v).tolist() for v in range(3)] == [[1, 2], [0], [0, 1]]


@pytest.mark.parametrize(
    "damage",
    [
        lambda offsets, data: (offsets, data[:-1]),  # truncated neighbour bytes
        lambda offsets, data: (offsets[:-1] + bytes([offsets[-1] + 1]), data),  # degree too big
        lambda offsets, data: (offsets, data[:-1] + bytes([data[-1] | 0x80])),  # open varint
        lambda offsets, data: (offsets, data[:-2] + bytes([0x7F, 0x7F])),  # id out of range
    ],
    ids=["truncated", "degrees-exceed-data", "unterminated-varint", "id-out-of-range"],
)
def test_damaged_bytes_are_refused(damage):
    adjacency = Adjacency.from_lists([np.array([1, 2, 300]), np.array([0]), np.array([0, 1]),
                                      np.arange(4, 400)] + [np.array([0])] * 396)
    offsets, data = csr.encode(adjacency)
    with pytest.raises(InvalidArgument):
        csr.decode(*damage(offsets, data))


def test_locality_order_shrinks_the_encoding():
    """Renumbering so that neighbours sit close makes the gaps, hence the bytes, smaller."""
    rng = np.random.default_rng(0)
    n = 3000
    ring = [np.unique(np.array([(v + d) % n for d in (-2, -1, 1, 2)])) for v in range(n)]
    shuffle = rng.permutation(n)
    inverse = np.argsort(shuffle)
    scrambled = Adjacency.from_lists([np.sort(inverse[ring[shuffle[v]]]) for v in range(n)])
    reordered = csr.renumber(scrambled, csr.locality_order(scrambled))
    scrambled_bytes = len(csr.encode(scrambled)[1])
    reordered_bytes = len(csr.encode(reordered)[1])
    assert reordered_bytes < 0.6 * scrambled_bytes
    assert sorted(reordered.degrees().tolist()) == sorted(scrambled.degrees().tolist())
