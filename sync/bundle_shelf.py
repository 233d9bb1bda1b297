"""Serving this device's current bundles to peers: the offer (manifest + block map) and blocks.

A block request names the bundle it wants; if the collection's bundle was replaced since the
offer (a build or an install renamed a new file over it), the request is refused rather than
answered with blocks of another file, and the peer asks for a new offer in its next session.
Block maps are cached per file identity (inode, mtime, size), so they are hashed once per
generation.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshdex.index.bundle_format import read_layout
from meshdex.index.bundle_manifest import BundleManifest
from meshdex.node.service import Node
from meshdex.sync.blocks import BlockMap, block_map_of, read_span
from meshdex.sync.errors import BundleRefused, ProtocolViolation


@dataclass(frozen=True, kw_only=True)
class BundleOffer:
    """A bundle as a peer sees it before fetching: what it is, and its blocks' hashes."""

    manifest: BundleManifest
    block_map: BlockMap


def _file_id(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class BundleShelf:
    """The current bundles of one node's collections, as offers and blocks. Thread-safe.
    Blocks are ``block_size_bytes`` long, by default ``blocks.block_size_for`` each file."""

    def __init__(self, node: Node, *, block_size_bytes: int | None = None) -> None:
        self.node, self.block_size_bytes = node, block_size_bytes
        self._lock = threading.Lock()
        self._offers: dict[str, tuple[tuple[int, int, int], BundleOffer]] = {}

    def _path(self, collection: str) -> Path:
        return self.node.indexes.bundle_path(collection)

    def offer(self, collection: str) -> BundleOffer | None:
        """The collection's current bundle, or None if it has none (or it is unreadable)."""
        try:
            with open(self._path(collection), "rb") as file:
                stat = os.fstat(file.fileno())
                with self._lock:
                    cached = self._offers.get(collection)
                if cached is not None and cached[0] == _file_id(stat):
                    return cached[1]
                with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapping:
                    view = memoryview(mapping)
                    try:
                        offer = BundleOffer(manifest=read_layout(view),
                                            block_map=block_map_of(
                                            view, block_size_bytes=self.block_size_bytes))
                    finally:
                        view.release()
        except FileNotFoundError:
            return None
        with self._lock:
            self._offers[collection] = (_file_id(stat), offer)
        return offer

    def blocks(self, collection: str, bundle_id: str,
               indexes: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """The requested blocks of bundle ``bundle_id``; ``BundleRefused`` if it is no longer
        the collection's current bundle."""
        offer = self.offer(collection)
        if offer is None or offer.manifest.bundle_id != bundle_id:
            raise BundleRefused(
                f"bundle {bundle_id} of {collection!r} is no longer current here",
                op="fetch blocks", hint="sync again to get the new bundle's offer")
        count = len(offer.block_map.hashes)
        if any(not 0 <= index < count for index in indexes):
            raise ProtocolViolation(f"block index out of range (the bundle has {count} blocks)")
        fd = os.open(self._path(collection), os.O_RDONLY)
        try:
            if _file_id(os.fstat(fd)) != self._offers[collection][0]:
                raise BundleRefused(f"bundle {bundle_id} of {collection!r} was just replaced",
                                    op="fetch blocks", hint="sync again")
            for index in indexes:
                offset, length = offer.block_map.span(index)
                yield index, read_span(fd, offset, length)
        finally:
            os.close(fd)
