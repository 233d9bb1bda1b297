"""A cache that learns: exact embeddings of the passages searches actually recompute.

Searches that ask about the same things recompute the same passages; keeping their exact
vectors (fp16) lets the next search score them without a model call. Entries are keyed by
passage label, which is derived from the passage's content, so they stay valid across
rebuilds of the index. The cache keeps to a byte budget with LFU and ageing: an entry starts
at ``FRESH_COUNT``, every hit adds one, every ``AGEING_PERIOD_LOOKUPS`` looked-up passages
halve all counts (so a burst of interest fades), and when the budget is full a new entry only
displaces one whose count has fallen below a new entry's (lowest first). Ties keep the
resident: a stream of one-off passages larger than the budget would otherwise push out each
entry before its query comes back, and a repeated query set bigger than the cache would find
nothing (issue 12: 97% recomputed on the second pass); with ageing, residents nobody asks for
again still make room within a period.

It is bound to one embedding fingerprint: a vector computed by another model or precision is
never served. ``load`` drops a persisted cache whose fingerprint digest differs (logged), and
``lookup``/``remember`` refuse a digest other than their own.

Persisted format (little-endian, no pickle): magic ``b"MDXLC1\\n\\0"``, the 32-byte fingerprint
digest, uint32 dim, uint64 entries, then labels (uint64), counts (float32) and vectors (fp16),
and a trailing SHA-256 of everything before it. Written to a temporary file, fsynced and
renamed, so a crash leaves the previous cache or the new one, never a torn one; a damaged file
is dropped (it is a cache: nothing is lost but its speed-up).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from meshdex.index.errors import FingerprintMismatch, InvalidArgument, ResourceExhausted

logger = logging.getLogger(__name__)

MAGIC = b"MDXLC1\n\0"
DIGEST_BYTES = 32
_HEADER = struct.Struct("<8s32sIQ")
AGEING_PERIOD_LOOKUPS = 4096
FRESH_COUNT = 1.0  # a new entry's count: it displaces only residents aged below it
LABEL_BYTES = 8
COUNT_BYTES = 4


def entry_bytes(dim: int) -> int:
    """What one cached passage costs against the budget: label, count and fp16 vector."""
    return LABEL_BYTES + COUNT_BYTES + 2 * dim


class LearnedCache:
    """Exact fp16 embeddings by passage label, under ``budget_bytes``; thread-safe."""

    def __init__(self, *, fingerprint_digest: str, dim: int, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise InvalidArgument(f"cache budget must be >= 0 bytes, got {budget_bytes}")
        self.fingerprint_digest = fingerprint_digest
        self.dim = dim
        self.budget_bytes = budget_bytes
        self._rows: dict[int, int] = {}  # label -> row in the arrays below
        self._labels = np.zeros(0, dtype=np.uint64)
        self._counts = np.zeros(0, dtype=np.float32)
        self._vectors = np.zeros((0, dim), dtype=np.float16)
        self._looked_up = 0
        self._lock = threading.Lock()
        self.changed = False

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, label: object) -> bool:
        return isinstance(label, int) and label in self._rows

    @property
    def used_bytes(self) -> int:
        return len(self._rows) * entry_bytes(self.dim)

    def _check(self, fingerprint_digest: str) -> None:
        if fingerprint_digest != self.fingerprint_digest:
            raise FingerprintMismatch(
                "the learned cache holds vectors of another embedding fingerprint",
                hint="it is dropped and relearned when the collection's model changes",
            )

    def lookup(self, labels: np.ndarray, fingerprint_digest: str) -> tuple[np.ndarray, np.ndarray]:
        """``(hit_mask, vectors_of_hits)`` (float32, hit order); counts every hit."""
        self._check(fingerprint_digest)
        with self._lock:
            rows = np.array([self._rows.get(int(x), -1) for x in labels], dtype=np.int64)
            hit = rows >= 0
            self._counts[rows[hit]] += 1.0
            self._looked_up += len(labels)
            if self._looked_up >= AGEING_PERIOD_LOOKUPS:
                self._counts *= 0.5
                self._looked_up = 0
            if hit.any():
                self.changed = True
            return hit, self._vectors[rows[hit]].astype(np.float32)

    def remember(self, labels: np.ndarray, vectors: np.ndarray, fingerprint_digest: str) -> None:
        """Keep the exact ``vectors`` of freshly recomputed ``labels`` as far as the budget
        allows, displacing only entries aged below ``FRESH_COUNT`` (least used first); the
        rest of the batch is not kept."""
        self._check(fingerprint_digest)
        capacity = self.budget_bytes // entry_bytes(self.dim)
        with self._lock:
            fresh = [(int(x), v) for x, v in zip(labels, vectors, strict=True)
                     if int(x) not in self._rows][:capacity]
            overflow = len(self._rows) + len(fresh) - capacity
            if overflow > 0:
                displaceable = int(np.count_nonzero(self._counts < FRESH_COUNT))
                self._evict(min(overflow, displaceable))
                fresh = fresh[: capacity - len(self._rows)]
            if not fresh:
                return
            start = len(self._labels)
            self._labels = np.concatenate([self._labels,
                                           np.array([x for x, _ in fresh], dtype=np.uint64)])
            self._counts = np.concatenate([self._counts,
                                           np.full(len(fresh), FRESH_COUNT, dtype=np.float32)])
            self._vectors = np.concatenate([self._vectors,
                                            np.stack([v for _, v in fresh]).astype(np.float16)])
            for offset, (label, _) in enumerate(fresh):
                self._rows[label] = start + offset
            self.changed = True

    def labels(self) -> frozenset[int]:
        """The labels held."""
        with self._lock:
            return frozenset(self._rows)

    def forget(self, labels: Iterable[int]) -> int:
        """Drop the entries of ``labels`` (those held); returns how many went."""
        with self._lock:
            gone = {int(label) for label in labels} & self._rows.keys()
            if gone:
                self._keep(np.flatnonzero([label not in gone
                                           for label in self._labels.tolist()]))
                self.changed = True
            return len(gone)

    def _evict(self, count: int) -> None:
        """Drop the ``count`` entries with the lowest count (oldest first among equals)."""
        self._keep(np.sort(np.argsort(self._counts, kind="stable")[count:]))

    def _keep(self, rows: np.ndarray) -> None:
        """Keep only the entries at ``rows`` (ascending), in that order."""
        self._labels, self._counts = self._labels[rows], self._counts[rows]
        self._vectors = self._vectors[rows]
        self._rows = {int(label): row for row, label in enumerate(self._labels.tolist())}

    def _capacity_on_load(self, stored: int) -> int:
        """Entries kept from a saved cache: the budget's worth, most used first."""
        return self.budget_bytes // entry_bytes(self.dim)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename)."""
        with self._lock:
            body = (_HEADER.pack(MAGIC, bytes.fromhex(self.fingerprint_digest), self.dim,
                                 len(self._labels))
                    + self._labels.astype("<u8").tobytes()
                    + self._counts.astype("<f4").tobytes()
                    + self._vectors.astype("<f2").tobytes())
            self.changed = False
        # One temporary name per process: readers of one store may save side by side.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        # 0600 like everything else in a data directory: the vectors say what was searched.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o600)
            handle.write(body + hashlib.sha256(body).digest())
            handle.flush()
            os.fsync(fd)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path, *, fingerprint_digest: str, dim: int,
             budget_bytes: int) -> LearnedCache:
        """The cache saved at ``path``, or an empty one when there is none, it is damaged, or
        it was learned under another fingerprint (both logged)."""
        cache = cls(fingerprint_digest=fingerprint_digest, dim=dim, budget_bytes=budget_bytes)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cache
        try:
            labels, counts, vectors, digest = _parse(data, dim)
        except InvalidArgument as error:
            logger.warning("dropping the learned cache %s: %s", path, error.message)
            return cache
        if digest != fingerprint_digest:
            logger.warning("dropping the learned cache %s: it was learned with another "
                           "embedding fingerprint", path)
            return cache
        keep = np.sort(np.argsort(-counts, kind="stable")[: cache._capacity_on_load(len(labels))])
        cache._labels, cache._counts = labels[keep].copy(), counts[keep].copy()
        cache._vectors = vectors[keep].copy()
        cache._rows = {int(label): row for row, label in enumerate(cache._labels.tolist())}
        return cache


def _parse(data: bytes, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if len(data) < _HEADER.size + DIGEST_BYTES:
        raise InvalidArgument("the file is too short")
    body, checksum = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != checksum:
        raise InvalidArgument("its checksum does not match")
    magic, digest, stored_dim, count = _HEADER.unpack_from(body)
    if magic != MAGIC:
        raise InvalidArgument("it is not a learned cache file")
    if stored_dim != dim:
        raise InvalidArgument(f"its vectors have dimension {stored_dim}, not {dim}")
    expected = _HEADER.size + count * (LABEL_BYTES + COUNT_BYTES + 2 * dim)
    if len(body) != expected:
        raise InvalidArgument(f"it holds {len(body)} bytes, expected {expected}")
    offset = _HEADER.size
    labels = np.frombuffer(body, dtype="<u8", count=count, offset=offset)
    offset += count * LABEL_BYTES
    counts = np.frombuffer(body, dtype="<f4", count=count, offset=offset)
    offset += count * COUNT_BYTES
    vectors = np.frombuffer(body, dtype="<f2", count=count * dim, offset=offset)
    if len(np.unique(labels)) != count or not np.all(np.isfinite(counts)):
        raise InvalidArgument("it repeats a label or holds a non-finite count")
    return labels, counts, vectors.reshape(count, dim), digest.hex()


class PinnedVectors(LearnedCache):
    """Exact embeddings a person chose to keep (``meshdex pin``): never evicted, never aged,
    not fed by searches, and refused beyond their own budget instead of evicting."""

    def remember(self, labels: np.ndarray, vectors: np.ndarray, fingerprint_digest: str) -> None:
        self._check(fingerprint_digest)  # searches do not add to the pinned set

    def _capacity_on_load(self, stored: int) -> int:
        return stored  # a pin is never dropped; the budget is checked when pinning

    def pin(self, labels: np.ndarray, vectors: np.ndarray, fingerprint_digest: str) -> int:
        """Keep ``vectors`` for ``labels`` for good; returns how many were new. Raises
        ``ResourceExhausted`` (nothing pinned) when they would not fit the budget."""
        self._check(fingerprint_digest)
        new = [i for i, label in enumerate(labels.tolist()) if int(label) not in self._rows]
        needed = (len(self._rows) + len(new)) * entry_bytes(self.dim)
        if needed > self.budget_bytes:
            raise ResourceExhausted(
                f"pinning {len(new)} more passages needs {needed:,} bytes; the pin budget is "
                f"{self.budget_bytes:,}",
                hint="pin fewer documents (a narrower --filter)",
            )
        if new:
            super().remember(labels[new], vectors[new], fingerprint_digest)
        return len(new)
