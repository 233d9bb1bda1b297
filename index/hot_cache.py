"""Hot-embedding cache: exact fp16 embeddings for a budgeted set of nodes (hubs first).

Hubs are on most search paths and often among the best candidates, so keeping their exact
vectors saves recomputes at a few hundred bytes each. The cache is bound to the embedding
fingerprint it was computed with: the ``cache_ids`` section starts with the fingerprint's
SHA-256 digest (32 bytes), then the sorted uint32 node ids; ``cache_vectors`` holds the fp16
rows in the same order. A cache whose digest differs from the index's fingerprint is dropped on
load (the graph stays usable), never used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from meshdex.index.errors import InvalidArgument

logger = logging.getLogger(__name__)

DIGEST_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class HotCache:
    """Exact embeddings for ``node_ids`` (sorted), computed under ``fingerprint_digest``."""

    fingerprint_digest: str  # hex SHA-256 of the EmbeddingFingerprint
    node_ids: np.ndarray  # uint32, sorted
    vectors: np.ndarray  # float16, shape (len(node_ids), dim)

    @classmethod
    def empty(cls, fingerprint_digest: str, dim: int) -> HotCache:
        return cls(
            fingerprint_digest=fingerprint_digest,
            node_ids=np.zeros(0, dtype=np.uint32),
            vectors=np.zeros((0, dim), dtype=np.float16),
        )

    @classmethod
    def from_nodes(
        cls, fingerprint_digest: str, node_ids: np.ndarray, vectors: np.ndarray
    ) -> HotCache:
        """Cache ``vectors[i]`` for ``node_ids[i]`` (any order)."""
        order = np.argsort(node_ids, kind="stable")
        return cls(
            fingerprint_digest=fingerprint_digest,
            node_ids=np.asarray(node_ids, dtype=np.uint32)[order],
            vectors=np.asarray(vectors, dtype=np.float16)[order],
        )

    def __len__(self) -> int:
        return len(self.node_ids)

    def lookup(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hit_mask, vectors_of_hits)`` for ``nodes``; vectors as float32 in hit order."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if len(self.node_ids) == 0 or len(nodes) == 0:
            empty = np.zeros((0, self.vectors.shape[1]), dtype=np.float32)
            return np.zeros(len(nodes), dtype=bool), empty
        position = np.searchsorted(self.node_ids, nodes)
        position = np.minimum(position, len(self.node_ids) - 1)
        hit = self.node_ids[position] == nodes
        return hit, self.vectors[position[hit]].astype(np.float32)

    def to_sections(self) -> dict[str, bytes]:
        digest = bytes.fromhex(self.fingerprint_digest)
        return {
            "cache_ids": digest + self.node_ids.astype("<u4").tobytes(),
            "cache_vectors": self.vectors.astype("<f2").tobytes(),
        }

    @classmethod
    def from_sections(
        cls, ids: bytes | memoryview, vectors: bytes | memoryview, *, dim: int, node_count: int
    ) -> HotCache:
        """Read the two sections (no copy of the vectors); validates sizes and ids."""
        if len(ids) < DIGEST_BYTES or (len(ids) - DIGEST_BYTES) % 4:
            raise InvalidArgument("cache_ids section has an invalid size")
        digest = bytes(ids[:DIGEST_BYTES]).hex()
        node_ids = np.frombuffer(ids, dtype="<u4", offset=DIGEST_BYTES)
        rows = np.frombuffer(vectors, dtype="<f2")
        if rows.size != len(node_ids) * dim:
            raise InvalidArgument(
                f"cache_vectors holds {rows.size} values, expected {len(node_ids)} × {dim}"
            )
        if len(node_ids) and (np.any(np.diff(node_ids.astype(np.int64)) <= 0)
                              or int(node_ids[-1]) >= node_count):
            raise InvalidArgument("cache node ids are unsorted or out of range")
        return cls(fingerprint_digest=digest, node_ids=node_ids, vectors=rows.reshape(-1, dim))
