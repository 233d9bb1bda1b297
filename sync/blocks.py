"""A bundle file as content-addressed blocks: the block map, and reading blocks of a file.

Blocks are fixed-size (``BLOCK_SIZE_BYTES``, the last one shorter) and named by their SHA-256.
Bundle sections start on page boundaries (``bundle_format.ALIGNMENT_BYTES``, which divides the
block size), so a section whose bytes did not change keeps its blocks even when the manifest
before it changed. Content-defined chunking (FastCDC) was not measured against this yet.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BLOCK_SIZE_BYTES = 64 * 1024
MAX_BLOCKS_PER_REQUEST = 64  # 4 MiB of blocks per FetchBlocks call
SHA256_BYTES = 32


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


def block_map_of(data: bytes | memoryview, *, block_size_bytes: int = BLOCK_SIZE_BYTES
                 ) -> BlockMap:
    """The block map of ``data`` (a whole file's bytes or mapping)."""
    view = memoryview(data)
    hashes = tuple(hashlib.sha256(view[start:start + block_size_bytes]).digest()
                   for start in range(0, view.nbytes, block_size_bytes))
    return BlockMap(size_bytes=view.nbytes, block_size_bytes=block_size_bytes, hashes=hashes)


def held_blocks(path: Path, *, block_size_bytes: int = BLOCK_SIZE_BYTES) -> dict[bytes, bytes]:
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
