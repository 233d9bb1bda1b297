"""The base layer we read out of hnswlib's state is exactly the graph hnswlib saved to disk."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from meshdex.index.graph import base_layer, build_hnsw

# hnswlib's saveIndex header: offsetLevel0, max_elements, cur_element_count,
# size_data_per_element, label_offset, offsetData (size_t), maxlevel (int),
# enterpoint_node (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t).
SAVED_HEADER = struct.Struct("<QQQQQQiIQQQdQ")


def _neighbours_from_saved_file(path) -> dict[int, set[int]]:
    """Parse hnswlib's saved file independently: label -> set of neighbour labels."""
    data = path.read_bytes()
    (offset_level0, _, count, stride, label_offset, _, _, _, _, max_m0, _, _, _) = (
        SAVED_HEADER.unpack_from(data, 0)
    )
    base = SAVED_HEADER.size
    rows = [data[base + i * stride : base + (i + 1) * stride] for i in range(count)]
    label_of = [struct.unpack_from("<Q", row, label_offset)[0] for row in rows]
    out = {}
    for row, label in zip(rows, label_of, strict=True):
        link_count = struct.unpack_from("<H", row, offset_level0)[0]
        assert link_count <= max_m0
        ids = struct.unpack_from(f"<{link_count}I", row, offset_level0 + 4)
        out[label] = {label_of[i] for i in ids}
    return out


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(12, 24))
    points = centres[rng.integers(0, 12, 600)] + 0.4 * rng.normal(size=(600, 24))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("M", [8, 16])
def test_base_layer_matches_hnswlibs_saved_file(tmp_path, vectors, M):
    index = build_hnsw(vectors, M=M, ef_construction=80, seed=1, threads=2)
    adjacency = base_layer(index)
    saved = tmp_path / "graph.bin"
    index.save_index(str(saved))
    expected = _neighbours_from_saved_file(saved)
    assert adjacency.node_count == len(vectors)
    for node in range(len(vectors)):
        assert set(adjacency.neighbors(node).tolist()) == expected[node]
    assert adjacency.degrees().max() <= M


def test_base_layer_links_each_node_to_its_near_neighbours(vectors):
    adjacency = base_layer(build_hnsw(vectors, M=16, ef_construction=100, seed=0))
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    linked = [nearest[v] in adjacency.neighbors(v) for v in range(len(vectors))]
    assert np.mean(linked) >= 0.95
