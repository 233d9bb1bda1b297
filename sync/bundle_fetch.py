"""Fetching a peer's bundle as blocks: only those not held, each checked, resumable.

The download is a partial file ``DATA_DIR/sync/incoming/COLLECTION.BUNDLE_ID.part`` of the
bundle's full size. A block counts as held when its bytes there already hash to the block map
(a resumed download) or when the current local bundle has a block with that hash (copied, not
fetched). The rest is fetched ``MAX_REQUEST_BYTES`` of blocks at a time; a block whose hash does not
match is dropped and asked for again, up to ``FETCH_ROUNDS`` times. An interrupted fetch keeps
the partial file, so the next session refetches nothing it already has; nothing outside the
incoming folder is touched until the whole file has verified.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from meshdex.node.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from meshdex.sync.blocks import blocks_per_request, held_blocks, read_span
from meshdex.sync.bundle_shelf import BundleOffer
from meshdex.sync.errors import BundleRefused, ProtocolViolation
from meshdex.sync.files import sync_dir

logger = logging.getLogger(__name__)

INCOMING_DIR_NAME = "incoming"
PART_SUFFIX = ".part"
FETCH_ROUNDS = 3

FetchBlocks = Callable[[Sequence[int]], Iterator[tuple[int, bytes]]]


@dataclass(frozen=True, kw_only=True)
class FetchOutcome:
    """Where the assembled file is, and what it took."""

    path: Path
    bytes_fetched: int
    blocks_fetched: int
    blocks_reused: int
    blocks_rejected: int


def partial_path(data_dir: Path, offer: BundleOffer) -> Path:
    directory = sync_dir(data_dir) / INCOMING_DIR_NAME
    directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    return directory / f"{offer.manifest.collection}.{offer.manifest.bundle_id}{PART_SUFFIX}"


def _drop_other_partials(path: Path, collection: str) -> None:
    for stale in path.parent.glob(f"{collection}.*{PART_SUFFIX}"):
        if stale != path:
            stale.unlink(missing_ok=True)


def fetch_bundle(*, data_dir: Path, offer: BundleOffer, local_bundle: Path,
                 fetch: FetchBlocks) -> FetchOutcome:
    """Assemble the offered bundle in its partial file; raises what ``fetch`` raises (the
    partial file stays for a resume) or ``BundleRefused`` when blocks keep failing their
    hash. The caller verifies the assembled file as a bundle before using it."""
    block_map = offer.block_map
    path = partial_path(data_dir, offer)
    _drop_other_partials(path, offer.manifest.collection)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.ftruncate(fd, block_map.size_bytes)
        missing = [index for index, digest in enumerate(block_map.hashes)
                   if hashlib.sha256(read_span(fd, *block_map.span(index))).digest() != digest]
        reused = len(block_map.hashes) - len(missing)
        if missing:
            local = held_blocks(local_bundle, block_size_bytes=block_map.block_size_bytes)
            for index in [i for i in missing if block_map.hashes[i] in local]:
                os.pwrite(fd, local[block_map.hashes[index]], block_map.span(index)[0])
                missing.remove(index)
                reused += 1
        fetched = fetched_bytes = rejected = 0
        for _ in range(FETCH_ROUNDS):
            if not missing:
                break
            failed: list[int] = []
            per_request = blocks_per_request(block_map.block_size_bytes)
            for start in range(0, len(missing), per_request):
                wanted = missing[start:start + per_request]
                arrived: set[int] = set()
                for index, data in fetch(wanted):
                    if index not in wanted or index in arrived:
                        raise ProtocolViolation(f"peer sent block {index}, which was not asked for")
                    fetched_bytes += len(data)
                    offset, length = block_map.span(index)
                    digest = hashlib.sha256(data).digest()
                    if len(data) != length or digest != block_map.hashes[index]:
                        rejected += 1
                        logger.warning("block %d of bundle %s failed its hash; fetching again",
                                       index, offer.manifest.bundle_id)
                        continue
                    os.pwrite(fd, data, offset)
                    arrived.add(index)
                    fetched += 1
                failed += [index for index in wanted if index not in arrived]
            missing = failed
        if missing:
            raise BundleRefused(
                f"{len(missing)} blocks of bundle {offer.manifest.bundle_id} failed verification "
                f"{FETCH_ROUNDS} times", op="fetch bundle", hint="sync again later")
        os.fsync(fd)
    finally:
        os.close(fd)
    return FetchOutcome(path=path, bytes_fetched=fetched_bytes, blocks_fetched=fetched,
                        blocks_reused=reused, blocks_rejected=rejected)
