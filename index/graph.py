"""Build an HNSW graph with hnswlib and take its base layer as plain adjacency arrays.

hnswlib keeps the base layer in one flat buffer, ``data_level0``: for each element,
``size_data_per_element`` bytes laid out as

    offset_level0:  uint32 header (low 16 bits = link count), then maxM0 uint32 internal ids
    offset_data:    the vector (dim float32)
    label_offset:   the external label (uint64)

``Index.__getstate__()`` hands that buffer out as a numpy array together with the layout
numbers; we read the link lists straight from it (no pickle is involved and nothing hnswlib
produced is stored). Internal ids are mapped to our node ids through the labels, because we add
node ``i`` under label ``i`` and hnswlib may assign internal ids in another order when it adds
with several threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import hnswlib
import numpy as np
from meshdex.index.errors import InvalidArgument

LINK_COUNT_MASK = 0xFFFF  # the upper bytes of the link header hold hnswlib's deleted flag


@dataclass(frozen=True, kw_only=True)
class Adjacency:
    """Directed adjacency in CSR form: node ``v``'s neighbours are
    ``indices[offsets[v]:offsets[v + 1]]``."""

    offsets: np.ndarray  # int64, shape (n + 1,)
    indices: np.ndarray  # int32 node ids

    @property
    def node_count(self) -> int:
        return len(self.offsets) - 1

    def neighbors(self, node: int) -> np.ndarray:
        return self.indices[self.offsets[node] : self.offsets[node + 1]]

    def degrees(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, lists: list[np.ndarray]) -> Adjacency:
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        indices = (
            np.concatenate(lists).astype(np.int32) if lists else np.zeros(0, dtype=np.int32)
        )
        return cls(offsets=offsets, indices=indices)

    def to_lists(self) -> list[np.ndarray]:
        return [self.neighbors(v).copy() for v in range(self.node_count)]


def build_hnsw(
    vectors: np.ndarray, *, M: int, ef_construction: int, seed: int, threads: int = 1
) -> hnswlib.Index:
    """An hnswlib cosine index over ``vectors`` with node ``i`` stored under label ``i``.

    ``M`` is the base-layer degree we want; hnswlib's base layer holds ``2 × its M``, so it is
    given ``M // 2``. One thread by default: then the graph depends only on the vectors, the
    params and the seed, so two devices building from the same passages get the same index.
    """
    count, dim = vectors.shape
    if count == 0:
        raise InvalidArgument("cannot build a graph over zero vectors")
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(
        max_elements=count, M=max(2, M // 2), ef_construction=ef_construction, random_seed=seed
    )
    index.add_items(
        vectors, np.arange(count, dtype=np.int64), num_threads=threads
    )
    return index


def base_layer(index: hnswlib.Index) -> Adjacency:
    """The base layer (level 0) of an hnswlib index, in our node ids (= hnswlib labels)."""
    state = index.__getstate__()[0]
    count = int(state["cur_element_count"])
    stride = int(state["size_data_per_element"])
    max_links = int(state["max_M0"])
    offset_links = int(state["offset_level0"])
    offset_label = int(state["label_offset"])
    raw = np.asarray(state["data_level0"]).view(np.uint8)[: count * stride].reshape(count, stride)
    links = np.ascontiguousarray(raw[:, offset_links : offset_links + 4 * (max_links + 1)])
    links = links.view(np.uint32)
    labels = np.ascontiguousarray(raw[:, offset_label : offset_label + 8]).view(np.uint64)[:, 0]
    link_counts = (links[:, 0] & LINK_COUNT_MASK).astype(np.int64)
    if count and (link_counts.max() > max_links or labels.max() >= count):
        raise InvalidArgument("unexpected hnswlib base-layer layout (link count or label range)")
    # Rows in internal-id order; re-key both the rows and the ids they hold by label.
    order = np.argsort(labels, kind="stable")
    link_counts = link_counts[order]
    slot = np.arange(max_links)[None, :] < link_counts[:, None]
    internal_targets = links[order, 1:][slot]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(link_counts, out=offsets[1:])
    indices = labels[internal_targets].astype(np.int32)
    return Adjacency(offsets=offsets, indices=indices)
