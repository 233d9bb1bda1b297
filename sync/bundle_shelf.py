"""Serving this device's current bundles to peers: the offer (manifest + block map) and blocks.

A block request names the bundle it wants; if the collection's bundle was replaced since the
offer (a build or an install renamed a new file over it), the request is refused rather than
answered with blocks of another file, and the peer asks for a new offer in its next session.
Block maps are cached per file identity (inode, mtime, size), so they are hashed once per
generation. Blocks go out as runs (``blocks.request_runs``): one read and one message per run
of consecutive requested blocks. A receiver that holds no block of a small bundle may get the
whole file with the offer (``offer_with_whole``), read from the same open file as the block
map, so it cannot belong to another generation.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from meshdex.index.bundle_format import read_layout
from meshdex.index.bundle_manifest import BundleManifest
from meshdex.index.errors import InvalidArgument
from meshdex.node.service import Node
from meshdex.sync.blocks import (
    MAX_REQUEST_BYTES,
    RUN_BYTES,
    BlockMap,
    block_map_of,
    blocks_per_request,
    read_span,
    request_runs,
)
from meshdex.sync.errors import BundleRefused, ProtocolViolation


@dataclass(frozen=True, kw_only=True)
class BundleOffer:
    """A bundle as a peer sees it before fetching: what it is, and its blocks' hashes."""

    manifest: BundleManifest
    block_map: BlockMap


def _file_id(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class BundleShelf:
    """The current bundles of one node's collections, as offers and block runs. Thread-safe.
    Blocks are ``block_size_bytes`` long, by default ``blocks.block_size_for`` each file; a
    run carries up to ``run_bytes`` of them (at most ``blocks.MAX_REQUEST_BYTES``, what a
    receiver accepts)."""

    def __init__(self, node: Node, *, block_size_bytes: int | None = None,
                 run_bytes: int = RUN_BYTES) -> None:
        if not 0 < run_bytes <= MAX_REQUEST_BYTES:
            raise InvalidArgument(f"run_bytes must be 1 to {MAX_REQUEST_BYTES}, not {run_bytes}")
        self.node, self.block_size_bytes, self.run_bytes = node, block_size_bytes, run_bytes
        self._lock = threading.Lock()
        self._offers: dict[str, tuple[tuple[int, int, int], BundleOffer]] = {}

    def _path(self, collection: str) -> Path:
        return self.node.indexes.bundle_path(collection)

    def offer(self, collection: str) -> BundleOffer | None:
        """The collection's current bundle, or None if it has none; ``BundleCorrupt`` or
        ``BundleVersionError`` (from ``read_layout``) if the file there is not one it can read,
        so a damaged bundle is reported rather than offered or passed over in silence."""
        found = self.offer_with_whole(collection, 0)
        return None if found is None else found[0]

    def offer_with_whole(self, collection: str,
                         max_bytes: int) -> tuple[BundleOffer, bytes | None] | None:
        """The offer and, if the bundle is at most ``max_bytes`` (and ``MAX_REQUEST_BYTES``),
        its whole file, both from the same open file: for a receiver that holds no block.
        None if the collection has no bundle."""
        try:
            with open(self._path(collection), "rb") as file:
                offer = self._offer_of(collection, file)
                size = offer.block_map.size_bytes
                small = size <= min(max_bytes, MAX_REQUEST_BYTES)
                return offer, read_span(file.fileno(), 0, size) if small else None
        except FileNotFoundError:
            return None

    def _offer_of(self, collection: str, file: BinaryIO) -> BundleOffer:
        """The offer of the open ``file``: cached while its identity stays the same."""
        file_id = _file_id(os.fstat(file.fileno()))
        with self._lock:
            cached = self._offers.get(collection)
        if cached is not None and cached[0] == file_id:
            return cached[1]
        offer = self._hashed(file)
        with self._lock:
            self._offers[collection] = (file_id, offer)
        return offer

    def _hashed(self, file: BinaryIO) -> BundleOffer:
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapping:
            view = memoryview(mapping)
            try:
                return BundleOffer(manifest=read_layout(view), block_map=block_map_of(
                    view, block_size_bytes=self.block_size_bytes))
            finally:
                view.release()

    def runs(self, collection: str, bundle_id: str,
             indexes: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """The requested blocks of bundle ``bundle_id`` as runs, each (first block index, the
        bytes of consecutive blocks); ``BundleRefused`` if it is no longer the collection's
        current bundle."""
        offer = self.offer(collection)
        if offer is None or offer.manifest.bundle_id != bundle_id:
            raise BundleRefused(
                f"bundle {bundle_id} of {collection!r} is no longer current here",
                op="fetch blocks", hint="sync again to get the new bundle's offer")
        count = len(offer.block_map.hashes)
        if any(not 0 <= index < count for index in indexes):
            raise ProtocolViolation(f"block index out of range (the bundle has {count} blocks)")
        most = blocks_per_request(offer.block_map.block_size_bytes)
        if len(indexes) > most:
            raise ProtocolViolation(f"a request asks for at most {most} blocks of "
                                    f"{offer.block_map.block_size_bytes} bytes, not {len(indexes)}")
        fd = os.open(self._path(collection), os.O_RDONLY)
        try:
            if _file_id(os.fstat(fd)) != self._offers[collection][0]:
                raise BundleRefused(f"bundle {bundle_id} of {collection!r} was just replaced",
                                    op="fetch blocks", hint="sync again")
            block_map = offer.block_map
            for first, length in request_runs(block_map, indexes, run_bytes=self.run_bytes):
                start = block_map.span(first)[0]
                end = sum(block_map.span(first + length - 1))
                yield first, read_span(fd, start, end - start)
        finally:
            os.close(fd)
