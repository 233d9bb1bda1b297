"""A bundle file as content-addressed blocks: the block map, and reading blocks of a file.

Blocks are fixed-size (``block_size_for``: one page, the last block shorter) and named by
their SHA-256. Bundle sections start on page boundaries (``bundle_format.ALIGNMENT_BYTES``),
so with page-sized blocks a section whose bytes did not change keeps every block even when a
section before it grew and pushed it along, and a section that grew at its end (codes and
labels after a delta build) changes only its last block. Measured in
``bench/bench_bundle_sync.py`` after 1% of 20,000 documents changed and a delta build:
page blocks fetch 2.0% of the bundle besides its header page, 64 KiB blocks 37%,
content-defined chunking (FastCDC, 8 KiB average) 4.9%. Only a bundle too big for
``MAX_MAP_BLOCKS`` pages gets larger blocks, so that the block map in the offer stays within
16 KiB.

Blocks travel as runs (``FetchBlocks`` messages of consecutive requested blocks, back to back,
at most ``RUN_BYTES`` unless one block is bigger): a message per 4 KiB block made gRPC's
per-message cost, not the bytes, the limit. The receiver splits a run by the block map
(``run_blocks``) and checks each block's SHA-256 on its own, so a damaged run costs only its
damaged blocks. ``RUN_BYTES`` is 1 MiB because it was the fastest size measured in
``bench/bench_bundle_sync.py`` for the larger bundle (whole transfer over loopback mTLS /
copying the file over a TLS socket, for a 1.2 MB built bundle and a 20 MB synthetic one, in a
run from before small bundles came whole with their offer, as the built one now does): one
block per message 0.17 / 0.49, 64 KiB 0.31 / 0.50, 256 KiB 0.44 / 0.53, 1 MiB 0.40 / 0.57,
4 MiB (a whole request in one message) 0.37 / 0.53. On the 1.2 MB bundle
256 KiB and 1 MiB are within noise of each other (0.38-0.44 over three runs); on 20 MB 1 MiB
was ahead in every run. A run keeps a few MiB of a transfer in memory per side, far below
gRPC's message limit (``transport.MAX_SYNC_MESSAGE_BYTES``), and never exceeds
``MAX_REQUEST_BYTES``, which is what a receiver accepts.

A receiver holding no block of a collection's bundle asks for it whole with the offer when it
is at most ``WHOLE_BUNDLE_BYTES`` (``MAX_REQUEST_BYTES``, one run's bound): one call instead of
the offer and a ``FetchBlocks`` call, whose setup (a streaming call, its thread, the server's
dispatch) was a millisecond of a 7 ms transfer. Measured with whole fetches of both kinds
interleaved in one process (loopback mTLS, load average 0.6-1.1): a 1.4 MB built bundle
7.1 -> 5.7 ms (ratio to the TLS copy 0.48 -> 0.61), a 3.9 MB synthetic one 18.0 -> 16.6 ms
(0.51 -> 0.56). Sending only the first 1 MiB with the offer and the rest with ``FetchBlocks``
was not faster than sending none (the second call stays), so only a bundle that fits whole
comes with its offer. An offer then not fetched (refused, or built here) moved at most those
bytes for nothing, and only while the receiver held no block.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshdex.index.bundle_format import ALIGNMENT_BYTES
from meshdex.sync.errors import ProtocolViolation

MIN_BLOCK_SIZE_BYTES = ALIGNMENT_BYTES
MAX_BLOCK_SIZE_BYTES = 4 * 1024 * 1024
MAX_MAP_BLOCKS = 512  # 16 KiB of hashes in an offer, until blocks reach MAX_BLOCK_SIZE_BYTES
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # blocks asked for in one FetchBlocks call; a run's bound
RUN_BYTES = 1024 * 1024  # packed into one FetchBlocks message (why: docstring)
WHOLE_BUNDLE_BYTES = MAX_REQUEST_BYTES  # a bundle this small comes with its offer (docstring)
MAX_BLOCKS_PER_REQUEST = MAX_REQUEST_BYTES // MIN_BLOCK_SIZE_BYTES
SHA256_BYTES = 32

Run = tuple[int, bytes]  # (first block index, the bytes of consecutive blocks)


@dataclass(frozen=True, kw_only=True)
class BlockMap:
    """The SHA-256 of every block of a file of ``size_bytes``."""

    size_bytes: int
    block_size_bytes: int
    hashes: tuple[bytes, ...]

    def span(self, index: int) -> tuple[int, int]:
        """(offset, length) of block ``index`` in the file."""
        start = index * self.block_size_bytes
        return start, min(self.block_size_bytes, self.size_bytes - start)


def block_count(size_bytes: int, block_size_bytes: int) -> int:
    return -(-size_bytes // block_size_bytes)


def block_size_for(size_bytes: int) -> int:
    """The block size for a bundle of ``size_bytes``: one page (the sections' alignment)
    while the map stays within ``MAX_MAP_BLOCKS`` hashes, else the smallest power of two
    that keeps it there (at most ``MAX_BLOCK_SIZE_BYTES``)."""
    block_size = MIN_BLOCK_SIZE_BYTES
    while (block_count(size_bytes, block_size) > MAX_MAP_BLOCKS
           and block_size < MAX_BLOCK_SIZE_BYTES):
        block_size *= 2
    return block_size


def blocks_per_request(block_size_bytes: int) -> int:
    """How many blocks one ``FetchBlocks`` call asks for: ``MAX_REQUEST_BYTES`` of them."""
    return max(1, MAX_REQUEST_BYTES // block_size_bytes)


def request_runs(block_map: BlockMap, indexes: Sequence[int], *,
                 run_bytes: int = RUN_BYTES) -> Iterator[tuple[int, int]]:
    """The requested ``indexes`` as runs, each (first index, block count): indexes that follow
    each other in the request and in the file, at most ``run_bytes`` of data per run unless a
    single block is bigger (then that block alone)."""
    first = count = size = 0
    for index in indexes:
        length = block_map.span(index)[1]
        if count and index == first + count and size + length <= run_bytes:
            count, size = count + 1, size + length
            continue
        if count:
            yield first, count
        first, count, size = index, 1, length
    if count:
        yield first, count


def run_blocks(block_map: BlockMap, first_block: int, size_bytes: int) -> range:
    """The blocks a received run of ``size_bytes`` starting at ``first_block`` covers;
    ``ProtocolViolation`` unless it is whole blocks of the bundle, 1 byte to
    ``MAX_REQUEST_BYTES`` (no request asks for more)."""
    count = len(block_map.hashes)
    start = first_block * block_map.block_size_bytes
    end = start + size_bytes
    if not 0 <= first_block < count or not 0 < size_bytes <= MAX_REQUEST_BYTES:
        raise ProtocolViolation(
            f"peer sent a run of {size_bytes} bytes at block {first_block}: runs start at one of "
            f"the bundle's {count} blocks and carry 1 to {MAX_REQUEST_BYTES} bytes")
    if end > block_map.size_bytes or (end % block_map.block_size_bytes
                                      and end != block_map.size_bytes):
        raise ProtocolViolation(
            f"peer sent a run of {size_bytes} bytes at block {first_block} that does not end on "
            f"a block boundary (blocks of {block_map.block_size_bytes} bytes, bundle of "
            f"{block_map.size_bytes})")
    return range(first_block, block_count(end, block_map.block_size_bytes))


def block_map_of(data: bytes | memoryview, *, block_size_bytes: int | None = None
                 ) -> BlockMap:
    """The block map of ``data`` (a whole file's bytes or mapping), in blocks of
    ``block_size_bytes`` (default: ``block_size_for`` its size)."""
    view = memoryview(data)
    if block_size_bytes is None:
        block_size_bytes = block_size_for(view.nbytes)
    hashes = tuple(hashlib.sha256(view[start:start + block_size_bytes]).digest()
                   for start in range(0, view.nbytes, block_size_bytes))
    return BlockMap(size_bytes=view.nbytes, block_size_bytes=block_size_bytes, hashes=hashes)


def held_blocks(path: Path, *, block_size_bytes: int) -> dict[bytes, bytes]:
    """Every block of the file at ``path`` by its SHA-256 (empty if there is no such file):
    the blocks a receiver already holds and need not fetch."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    view = memoryview(data)
    blocks = {}
    for start in range(0, len(data), block_size_bytes):
        block = bytes(view[start:start + block_size_bytes])
        blocks.setdefault(hashlib.sha256(block).digest(), block)
    return blocks


def read_span(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of an open file (short only at its end)."""
    return os.pread(fd, length, offset)
