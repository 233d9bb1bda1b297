"""Product quantisation: small codes that give approximate query–passage similarities.

The vector is first turned by a learnt orthogonal rotation (OPQ, Ge et al. 2013), then split
into ``subvectors`` equal slices; each slice is replaced by the id of its nearest centroid
among ``2 ** bits`` learnt with scikit-learn's k-means (MiniBatchKMeans for 256 centroids,
KMeans for 16). 4-bit codes pack two slices per byte.

The rotation is trained by alternating the two halves of the problem a few times on the
training sample: centroids for the rotated vectors, then the rotation that best maps the
vectors onto their reconstructions (the orthogonal Procrustes solution, one SVD). It spreads
the variance of the embedding over the slices, so the same bytes lose less: on the docs corpus
(64 × 4-bit codes) the exact top 3 of a FAQ question lies among the best 16 by code score
0.97 of the time with the rotation and 0.90 without (``BuildParams`` has the figures).
``rotation_iterations=0`` trains plain PQ (no rotation), as indexes before it were built. A
collection too small for a rotation of its own to pay for its bytes (``rotation_min_vectors``:
4,608 passages for 384 dimensions and 32-byte codes) uses the rotation shipped for its model
when there is one (``model_rotations``), and none otherwise.

Query time uses asymmetric distance computation (ADC): the exact (rotated) query against the
centroids. ``byte_table(query)`` returns, for every code byte position and every possible
byte value, the similarity contribution of that byte; a code's approximate similarity is then
the sum of ``code_bytes`` table lookups, whatever the bit width, and codes are never unpacked.
A flat scan of every code (``scan_scores``) goes two bytes a lookup instead, over a copy of the
codes laid out by byte pair (``scan_layout``): 40 ms for a million 32-byte codes and the top
80 of them on this machine's two cores, 49 ms on one (``bench/results/scan.md``), against
230-300 ms for ``adc_scores``' one gather per byte over the row-major codes.

Why this and not faiss (``bench/results/codes.md``: docs corpus, 32-byte codes, the share of
each query's exact top 3 among the 16 best passages by code score, FAQ / glossary): faiss's
OPQ + PQ finds less at the same bytes (0.928 / 0.952 against 0.962 / 0.958 here), trains 5
times slower and keeps its rotation in float32 (index 8.8% of the text against 5.1%). Its
additive quantisers find more per byte (LSQ with 24-byte codes: 0.949 / 0.958) but keep
full-dimension codebooks of 0.6-1.2 MB, more than all the codes of a collection this size.
Its 4-bit fast scan is ten times faster over a million codes (5.1 ms against 49 ms on one
core, the same run, ``bench_scan``); this scan's 40 ms on two threads is inside issue 12's 50
ms bound. It scores with 8-bit rounded tables, so the re-rank bound, filters and tombstones
would need re-doing over it: not done, and one scan is kept, this one.

The codebook section (``to_bytes``) starts with ``CODEBOOK_MAGIC`` and a version: version 1
holds the float16 centroids and then, by its flags, the rotation in ``rotation_layout`` form or
the SHA-256 of the model rotation it used (a reader without that rotation refuses the section).
A section of exactly the centroid bytes and nothing else is the header-less layout of indexes
built before the rotation (read as version 0, no rotation).
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from meshdex.index import model_rotations, rotation_layout
from meshdex.index.errors import InvalidArgument
from meshdex.index.model_rotations import ModelRotation
from meshdex.index.params import RECALL_TARGETS

logger = logging.getLogger(__name__)

BYTE_VALUES = 256
SCAN_CHUNK = 1 << 15  # codes per gather in scan_scores
# scan_scores splits a scan across threads from this many codes on (a scan of fewer takes a
# few ms, where starting threads is a noticeable share), and uses at most this many threads.
SCAN_PARALLEL_MIN = 1 << 17
SCAN_MAX_WORKERS = 8
CODEBOOK_MAGIC = b"MDXQ"
CODEBOOK_VERSION = 1
_HEADER = struct.Struct("<4sHH")  # magic, version, flags
_FLAG_ROTATION = 1
_FLAG_MODEL_ROTATION = 2
# What follows the centroids, by the section's flags (one flag at most): how an error names
# it, and its bytes for a dimension.
_AFTER_CENTROIDS = {
    0: ("", lambda dim: 0),
    _FLAG_ROTATION: (" with a rotation", rotation_layout.rotation_bytes),
    _FLAG_MODEL_ROTATION: (" naming a model rotation", lambda dim: model_rotations.DIGEST_BYTES),
}


@dataclass(frozen=True, kw_only=True)
class ProductQuantizer:
    """A trained codebook: ``centroids[s, c]`` is centroid ``c`` of slice ``s`` (float32) of
    ``vector @ rotation`` (no rotation: of the vector itself). ``model_rotation`` is set when
    the rotation is the one shipped for the model, which the codebook names instead of storing.
    """

    centroids: np.ndarray  # (subvectors, 2 ** bits, dim // subvectors)
    bits: int
    rotation: np.ndarray | None = None  # (dim, dim) float32, orthogonal up to int8 rounding
    model_rotation: ModelRotation | None = None

    @property
    def subvectors(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[0] * self.centroids.shape[2]

    @property
    def code_bytes(self) -> int:
        return self.subvectors * self.bits // 8

    @property
    def default_recall_target(self) -> float:
        """The ``recall_target`` a search of these codes gets when it names none: coarser
        codes need more of the pool scored for the same recall (``params.RECALL_TARGETS``)."""
        if self.model_rotation is not None:
            return RECALL_TARGETS["model rotation"]
        return RECALL_TARGETS["learnt rotation" if self.rotation is not None else "no rotation"]

    @classmethod
    def train(
        cls,
        vectors: np.ndarray,
        *,
        subvectors: int,
        bits: int,
        sample: int,
        seed: int,
        rotation_iterations: int = 0,
        model_rotation: ModelRotation | None = None,
    ) -> ProductQuantizer:
        """Learn centroids (and with ``rotation_iterations`` > 0 a rotation, OPQ) on at most
        ``sample`` of ``vectors`` (training cost stays bounded).

        No rotation is learnt for fewer vectors than ``rotation_min_vectors``: its ``dim²``
        stored bytes would outweigh all their codes. They use ``model_rotation`` instead
        (``model_rotations.for_model``), when given.
        """
        count, dim = vectors.shape
        if dim % subvectors:
            raise InvalidArgument(
                f"pq_subvectors={subvectors} does not divide the embedding dimension {dim}",
                hint="pick a divisor of the dimension, e.g. 16, 32 or 48 for 384",
            )
        if count == 0:
            raise InvalidArgument("cannot train product quantisation on zero vectors")
        shipped = None
        if count < rotation_min_vectors(dim, subvectors * bits // 8):
            shipped = model_rotation if rotation_iterations > 0 else None
            rotation_iterations = 0
        rng = np.random.default_rng(seed)
        if count > sample:
            vectors = vectors[np.sort(rng.choice(count, size=sample, replace=False))]
        vectors = np.asarray(vectors, dtype=np.float32)
        import sklearn.cluster  # noqa: F401  (loads its OpenMP runtime before the limit below)
        from threadpoolctl import threadpool_limits

        # One BLAS/OpenMP thread: these clusterings are tiny, and with a thread pool per call
        # they ran 50x slower on a busy 2-core machine (23 s vs 0.4 s for 32 subspaces). The
        # limit reaches only the libraries loaded when it is set: scikit-learn imported inside
        # it (``_cluster``) left the first build of a process on every OpenMP thread, and its
        # k-means rounded differently from every later build (a test builds twice).
        with threadpool_limits(limits=1):
            rotation = shipped.rotation if shipped is not None else None
            for _ in range(rotation_iterations):
                rotated = vectors if rotation is None else vectors @ rotation
                plain = cls(centroids=_centroids(rotated, subvectors, bits, seed), bits=bits)
                # Orthogonal Procrustes: the rotation taking the vectors closest to the
                # reconstructions of their rotated codes.
                left, _, right = np.linalg.svd(vectors.T @ plain.reconstruct(plain.encode(rotated)))
                rotation = rotation_layout.as_stored(left @ right)
            rotated = vectors if rotation is None else vectors @ rotation
            centroids = _centroids(rotated, subvectors, bits, seed)
        # Round through the stored precision so codes made now and after a reload agree.
        return cls(centroids=centroids.astype("<f2").astype(np.float32), bits=bits,
                   rotation=rotation, model_rotation=shipped)

    def _rotated(self, vectors: np.ndarray) -> np.ndarray:
        return vectors if self.rotation is None else vectors @ self.rotation

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes for ``vectors``: uint8 array of shape ``(n, code_bytes)``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidArgument(f"expected vectors of dimension {self.dim}")
        slices = self._rotated(vectors).reshape(len(vectors), self.subvectors, -1)
        ids = np.empty((len(vectors), self.subvectors), dtype=np.uint8)
        for s in range(self.subvectors):
            centroids = self.centroids[s]
            distance = (
                (centroids * centroids).sum(axis=1)[None, :] - 2.0 * slices[:, s, :] @ centroids.T
            )
            ids[:, s] = np.argmin(distance, axis=1)
        if self.bits == 4:
            return (ids[:, 0::2] | (ids[:, 1::2] << 4)).astype(np.uint8)
        return ids

    def slice_ids(self, codes: np.ndarray) -> np.ndarray:
        """Centroid id per slice, shape ``(n, subvectors)``."""
        if self.bits == 4:
            ids = np.empty((len(codes), self.subvectors), dtype=np.uint8)
            ids[:, 0::2] = codes & 0x0F
            ids[:, 1::2] = codes >> 4
            return ids
        return np.asarray(codes)

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Approximate vectors for ``codes`` in the embedding's own space (rotated back):
        float32, shape ``(n, dim)``, so ``reconstruct(codes) @ q`` is the ADC score."""
        ids = self.slice_ids(codes)
        parts = self.centroids[np.arange(self.subvectors)[None, :], ids]
        flat = parts.reshape(len(codes), self.dim)
        return flat if self.rotation is None else flat @ self.rotation.T

    def byte_table(self, query: np.ndarray) -> np.ndarray:
        """ADC table, shape ``(code_bytes, 256)``: similarity contributed by each byte value."""
        query = np.asarray(query, dtype=np.float32)
        slices = self._rotated(query).reshape(self.subvectors, -1)
        per_slice = np.einsum("scd,sd->sc", self.centroids, slices)  # (subvectors, 2**bits)
        if self.bits == 8:
            return per_slice
        values = np.arange(BYTE_VALUES)
        return per_slice[0::2][:, values & 0x0F] + per_slice[1::2][:, values >> 4]

    def to_bytes(self) -> bytes:
        """The codebook section (version ``CODEBOOK_VERSION``, see the module docstring)."""
        if self.model_rotation is not None:
            flags, rotation = _FLAG_MODEL_ROTATION, self.model_rotation.digest
        elif self.rotation is not None:
            flags, rotation = _FLAG_ROTATION, rotation_layout.to_bytes(self.rotation)
        else:
            flags, rotation = 0, b""
        return b"".join([_HEADER.pack(CODEBOOK_MAGIC, CODEBOOK_VERSION, flags),
                         self.centroids.astype("<f2").tobytes(), rotation])

    @classmethod
    def from_bytes(
        cls, data: bytes | memoryview, *, subvectors: int, bits: int, dim: int
    ) -> ProductQuantizer:
        """Read a codebook section of either version; the layout comes from the build params.
        A section naming a model rotation this meshdex does not ship raises ``InvalidArgument``.
        """
        data = memoryview(data).cast("B")
        centroid_bytes = subvectors * (1 << bits) * (dim // subvectors) * 2
        if len(data) == centroid_bytes:  # version 0: centroids only, no header
            return cls(centroids=_half_centroids(data, subvectors, bits, dim), bits=bits)
        if len(data) < _HEADER.size:
            raise InvalidArgument(f"codebook section has {len(data)} bytes, too few for a header")
        magic, version, flags = _HEADER.unpack_from(data)
        if magic != CODEBOOK_MAGIC or version != CODEBOOK_VERSION or flags not in _AFTER_CENTROIDS:
            raise InvalidArgument(
                f"codebook section is not version {CODEBOOK_VERSION} "
                f"(magic {bytes(magic)!r}, version {version}, flags {flags})",
                hint="a newer meshdex may have written it",
            )
        what, size_of = _AFTER_CENTROIDS[flags]
        expected = _HEADER.size + centroid_bytes + size_of(dim)
        if len(data) != expected:
            raise InvalidArgument(
                f"codebook section has {len(data)} bytes, expected {expected} "
                f"for {subvectors} subvectors × {bits} bits × dimension {dim}{what}"
            )
        body = data[_HEADER.size :]
        centroids = _half_centroids(body[:centroid_bytes], subvectors, bits, dim)
        rest = body[centroid_bytes:]
        if flags == _FLAG_MODEL_ROTATION:
            shipped = model_rotations.by_digest(bytes(rest))
            if shipped.rotation.shape[0] != dim:
                raise InvalidArgument(
                    f"codebook names a model rotation of dimension {shipped.rotation.shape[0]}, "
                    f"the index has {dim}"
                )
            return cls(centroids=centroids, bits=bits, rotation=shipped.rotation,
                       model_rotation=shipped)
        rotation = rotation_layout.from_bytes(rest, dim) if flags == _FLAG_ROTATION else None
        return cls(centroids=centroids, bits=bits, rotation=rotation)


def adc_scores(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Approximate similarities of ``codes`` (shape ``(n, code_bytes)``) under ``table``."""
    positions = np.arange(table.shape[0]) * BYTE_VALUES
    return table.ravel()[codes.astype(np.intp) + positions].sum(axis=1)


def rotation_min_vectors(dim: int, code_bytes: int) -> int:
    """The fewest vectors whose codes are as big as a stored rotation (``dim²`` int8 bytes)."""
    return -(-dim * dim // code_bytes)


def scan_layout(codes: np.ndarray) -> np.ndarray:
    """``codes`` (shape ``(n, code_bytes)``) as ``scan_scores`` reads them: each pair of code
    bytes as one little-endian uint16, one contiguous row per pair (an odd last byte is paired
    with 0), shape ``(ceil(code_bytes / 2), n)``."""
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.zeros((len(codes), 1), dtype=np.uint8)], axis=1)
    pairs = codes[:, 0::2].astype(np.uint16) | (codes[:, 1::2].astype(np.uint16) << 8)
    return np.ascontiguousarray(pairs.T)


def scan_scores(table: np.ndarray, layout: np.ndarray, *, workers: int | None = None
                ) -> np.ndarray:
    """``adc_scores`` of every code in ``layout`` (from ``scan_layout``), in code order.

    Each byte pair in turn gets a table of its 65,536 value sums (256 KB, reused: it stays in
    cache, and one lookup answers two bytes); a row of the layout is then one gather. Nothing
    per query is bigger than that table and two score arrays: a 4 MB table for all pairs at
    once made the scan four times slower on 11,657 codes once the process held a model.

    The gather goes ``SCAN_CHUNK`` codes at a time through a reused index buffer: ``take``
    with uint16 indices converts the whole row to a fresh intp array first, which at 1M codes
    was 40% of the scan (8 MB a pair, out of cache); 32K codes was the fastest chunk measured
    (8K-128K: 74, 61, 79 ms against 104 ms unchunked, 1M random codes, one core).

    From ``SCAN_PARALLEL_MIN`` codes on, the codes are split into one contiguous share per
    thread (``workers``, by default ``scan_workers()``), each scanned with its own pair table:
    numpy's gather and add release the GIL, and a search's model is not running while its
    candidates are found (``bench/results/scan.md`` has one thread against all).
    """
    table = np.asarray(table, dtype=np.float32)
    if table.shape[0] % 2:  # the padding byte (always 0) contributes nothing
        table = np.concatenate([table, np.zeros((1, BYTE_VALUES), dtype=np.float32)])
    count = layout.shape[1]
    scores = np.zeros(count, dtype=np.float32)
    shares = _scan_shares(count, scan_workers() if workers is None else workers)
    if len(shares) == 1:
        _scan_share(table, layout, scores, shares[0])
    else:
        for done in [_scan_pool().submit(_scan_share, table, layout, scores, share)
                     for share in shares]:
            done.result()
    return scores


def scan_workers() -> int:
    """Threads a large flat scan uses: the cores this process may run on, at most
    ``SCAN_MAX_WORKERS``."""
    return max(1, min(SCAN_MAX_WORKERS, len(os.sched_getaffinity(0))))


def _scan_shares(count: int, workers: int) -> list[range]:
    """``count`` codes cut into at most ``workers`` contiguous shares of whole chunks (one
    share below ``SCAN_PARALLEL_MIN`` codes)."""
    if count < SCAN_PARALLEL_MIN or workers == 1:
        return [range(0, count)]
    chunks = -(-count // SCAN_CHUNK)
    per_share = -(-chunks // workers) * SCAN_CHUNK
    return [range(start, min(start + per_share, count)) for start in range(0, count, per_share)]


@functools.cache
def _scan_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=SCAN_MAX_WORKERS, thread_name_prefix="meshdex-scan")


# A forked child has the parent's pool without its threads: work queued there never ran.
os.register_at_fork(after_in_child=_scan_pool.cache_clear)


def _scan_share(table: np.ndarray, layout: np.ndarray, scores: np.ndarray, share: range) -> None:
    """Add the codes of ``share``'s scores into ``scores`` (each share writes only its own)."""
    pair_table = np.empty((BYTE_VALUES, BYTE_VALUES), dtype=np.float32)
    sums = pair_table.reshape(-1)
    indices = np.empty(min(SCAN_CHUNK, len(share)), dtype=np.intp)
    looked_up = np.empty(len(indices), dtype=np.float32)
    for pair, pairs in enumerate(layout):
        # uint16 value = first byte | second byte << 8: row = second byte, column = first.
        np.add.outer(table[2 * pair + 1], table[2 * pair], out=pair_table)
        for start in range(share.start, share.stop, SCAN_CHUNK):
            part = pairs[start : min(start + SCAN_CHUNK, share.stop)]
            size = len(part)
            np.copyto(indices[:size], part, casting="unsafe")
            # Every uint16 is inside the table: "wrap" skips the bounds check that the default
            # mode makes per index (the gather 30% faster, 1M codes).
            sums.take(indices[:size], out=looked_up[:size], mode="wrap")
            scores[start : start + size] += looked_up[:size]


def _half_centroids(data: memoryview, subvectors: int, bits: int, dim: int) -> np.ndarray:
    half = np.frombuffer(data, dtype="<f2").reshape(subvectors, 1 << bits, dim // subvectors)
    return half.astype(np.float32)


def _centroids(vectors: np.ndarray, subvectors: int, bits: int, seed: int) -> np.ndarray:
    """``2 ** bits`` k-means centroids per slice of ``vectors`` (float32)."""
    slices = vectors.reshape(len(vectors), subvectors, vectors.shape[1] // subvectors)
    centroid_count = 1 << bits
    centroids = np.empty((subvectors, centroid_count, slices.shape[2]), dtype=np.float32)
    for s in range(subvectors):
        centroids[s] = _cluster(slices[:, s, :], centroid_count, seed + s)
    return centroids


def _cluster(points: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """``clusters`` centroids of ``points``; with fewer distinct points than clusters, the
    distinct points are repeated (every code id stays valid). scikit-learn is imported here,
    not with the module: it took 1.5 s of every CLI start, and only training needs it."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    distinct = np.unique(points, axis=0)
    if len(distinct) <= clusters:
        reps = -(-clusters // len(distinct))
        return np.tile(distinct, (reps, 1))[:clusters]
    if clusters > 16:
        model = MiniBatchKMeans(
            n_clusters=clusters, random_state=seed, n_init=1, batch_size=2048, max_iter=50
        )
    else:
        model = KMeans(n_clusters=clusters, random_state=seed, n_init=1, max_iter=50)
    # Near-duplicate passages can leave a centroid empty; k-means copes, the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(points)
    return model.cluster_centers_.astype(np.float32)
