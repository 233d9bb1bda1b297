"""Compact CSR adjacency: sorted, delta-encoded, varint-packed neighbour lists.

Each node's list is sorted; its first id is stored as the zig-zag encoded difference to the
node's own id (nodes are numbered so neighbours sit close, see ``locality_order``), the rest as
gaps to the previous id. Every number is a LEB128 varint (7 bits per byte, high bit = more
bytes follow). The offsets section stores each node's degree as a varint too (one byte for any
degree below 128, instead of four for a uint32 offset); the CSR offsets are their prefix sum,
computed when the graph is decoded. Search decodes the whole graph once, vectorised (no
per-node Python loop), so per-node random access into the bytes is not needed.
"""

from __future__ import annotations

import numpy as np
from meshdex.index.errors import InvalidArgument
from meshdex.index.graph import Adjacency

VARINT_MAX_BYTES = 10  # enough for any uint64


def varint_encode(values: np.ndarray) -> np.ndarray:
    """LEB128 bytes of non-negative integers, concatenated (uint8)."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    byte_count = varint_lengths(values)
    ends = np.cumsum(byte_count)
    starts = ends - byte_count
    out = np.zeros(int(ends[-1]), dtype=np.uint8)
    for position in range(int(byte_count.max())):
        has = byte_count > position
        chunk = (values[has] >> np.uint64(7 * position)) & np.uint64(0x7F)
        more = (byte_count[has] > position + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + position] = (chunk | more).astype(np.uint8)
    return out


def varint_decode(data: np.ndarray) -> np.ndarray:
    """Inverse of ``varint_encode`` (uint64). Refuses truncated or over-long numbers."""
    data = np.asarray(data, dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    last = (data & 0x80) == 0
    if not last[-1]:
        raise InvalidArgument("truncated varint stream")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > VARINT_MAX_BYTES:
        raise InvalidArgument("varint longer than 10 bytes")
    position = np.arange(data.size) - np.repeat(starts, lengths)
    parts = (data & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
    return np.add.reduceat(parts, starts)


def _zigzag(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    return ((values << 1) ^ (values >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.uint64)
    return ((values >> np.uint64(1)).astype(np.int64)) ^ -((values & np.uint64(1)).astype(np.int64))


def encode(adjacency: Adjacency) -> tuple[bytes, bytes]:
    """``(offsets, neighbors)`` section bytes for an adjacency (lists get sorted)."""
    n = adjacency.node_count
    degrees = adjacency.degrees()
    owner = np.repeat(np.arange(n, dtype=np.int64), degrees)
    # Sort within each list: by (owner, id) in one lexsort.
    ids = adjacency.indices.astype(np.int64)
    ids = ids[np.lexsort((ids, owner))]
    first = adjacency.offsets[:-1][degrees > 0]
    values = np.diff(ids, prepend=0)
    not_first = np.ones(len(ids), dtype=bool)
    not_first[first] = False
    if np.any(values[not_first] <= 0):
        raise InvalidArgument("duplicate neighbour in a list")
    values = values.astype(np.uint64)
    values[first] = _zigzag(ids[first] - owner[first])
    return varint_encode(degrees).tobytes(), varint_encode(values).tobytes()


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes each value takes as a varint."""
    values = np.asarray(values, dtype=np.uint64)
    length = np.ones(values.shape, dtype=np.int64)
    for shift in range(7, 64, 7):
        length += values >= np.uint64(1 << shift)
    return length


def decode(offsets: bytes | memoryview, neighbors: bytes | memoryview) -> Adjacency:
    """Inverse of ``encode``; refuses streams whose degrees and values do not agree."""
    counts = varint_decode(np.frombuffer(offsets, dtype=np.uint8)).astype(np.int64)
    values = varint_decode(np.frombuffer(neighbors, dtype=np.uint8))
    n = len(counts)
    if int(counts.sum()) != len(values):
        raise InvalidArgument(
            f"graph degrees add up to {int(counts.sum())} neighbours but {len(values)} are stored"
        )
    value_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=value_offsets[1:])
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    deltas = values.astype(np.int64)
    starts = value_offsets[:-1][counts > 0]
    deltas[starts] = _unzigzag(values[starts]) + owner[starts]
    absolute = np.cumsum(deltas)
    # Segmented cumsum: subtract what the previous lists contributed.
    before = np.zeros(len(starts), dtype=np.int64)
    before[1:] = absolute[starts[1:] - 1]
    absolute -= np.repeat(before, counts[counts > 0])
    if absolute.size and (absolute.min() < 0 or absolute.max() >= n):
        raise InvalidArgument("neighbour id out of range")
    return Adjacency(offsets=value_offsets, indices=absolute.astype(np.int32))


def locality_order(adjacency: Adjacency) -> np.ndarray:
    """A node numbering (``order[new] = old``) that puts neighbours close together (reverse
    Cuthill-McKee on the symmetrised graph), so the gaps in ``encode`` stay small. scipy is
    imported here: only graph builds need it, and every CLI start paid for it."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    n = adjacency.node_count
    owner = np.repeat(np.arange(n), adjacency.degrees())
    matrix = csr_matrix(
        (np.ones(len(owner), dtype=np.int8), (owner, adjacency.indices)), shape=(n, n)
    )
    matrix = (matrix + matrix.T).tocsr()
    return np.asarray(reverse_cuthill_mckee(matrix, symmetric_mode=True), dtype=np.int64)


def renumber(adjacency: Adjacency, order: np.ndarray) -> Adjacency:
    """The same graph with node ``order[new]`` renamed ``new``."""
    n = adjacency.node_count
    new_of_old = np.empty(n, dtype=np.int64)
    new_of_old[order] = np.arange(n)
    lists = [np.sort(new_of_old[adjacency.neighbors(int(old))]) for old in order]
    return Adjacency.from_lists(lists)
