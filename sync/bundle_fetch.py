"""Fetching a peer's bundle as blocks: only those not held, each checked, resumable.

The download is a partial file ``DATA_DIR/sync/incoming/COLLECTION.BUNDLE_ID.part`` of the
bundle's full size. A block counts as held when its bytes there already hash to the block map
(a resumed download) or when the current local bundle has a block with that hash (copied, not
fetched). The rest is fetched ``MAX_REQUEST_BYTES`` of blocks at a time, each request sent
while the one before it is still arriving. Blocks arrive in runs of consecutive blocks, which
are split by the block map and checked block by block: a block whose hash does not match is
dropped (its run's other blocks are kept) and asked for again, up to ``FETCH_ROUNDS`` times.
A run that is not whole blocks that were asked for, and not yet received, is a protocol
violation. An interrupted fetch keeps the partial file, so the next session refetches nothing
it already has; nothing outside the incoming folder is touched until the whole file has
verified.

A receiver that holds no block of a collection's bundle asks for the whole bundle with the
offer when it is small (``blocks.WHOLE_BUNDLE_BYTES``): a small bundle then costs one call
instead of two, the second call's setup being most of what such a transfer takes beyond the
bytes. Those bytes are the first round: split by the block map and checked block by block
like any run, a failing block asked for again with ``FetchBlocks``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from meshdex.node.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from meshdex.sync.blocks import (
    BlockMap,
    Run,
    blocks_per_request,
    held_blocks,
    read_span,
    run_blocks,
)
from meshdex.sync.bundle_shelf import BundleOffer
from meshdex.sync.errors import BundleRefused, ProtocolViolation
from meshdex.sync.files import sync_dir

logger = logging.getLogger(__name__)

INCOMING_DIR_NAME = "incoming"
PART_SUFFIX = ".part"
FETCH_ROUNDS = 3

class BlockRuns(Protocol):
    """The answer to one block request (a generator will do)."""

    def __iter__(self) -> Iterator[Run]:
        """The runs: (first block index, the bytes of consecutive blocks)."""

    def close(self) -> None:
        """Stop the request (idempotent; nothing once it has ended)."""


# Asked for block indexes, returns their runs. Calling it may send the request at once (the
# gRPC client does): the next request is asked for while the current one's runs arrive, so
# the peer does not wait between requests.
FetchBlocks = Callable[[Sequence[int]], BlockRuns]


@dataclass(frozen=True, kw_only=True)
class FetchOutcome:
    """Where the assembled file is, and what it took."""

    path: Path
    bytes_fetched: int
    blocks_fetched: int
    blocks_reused: int
    blocks_rejected: int


@dataclass
class _Tally:
    bytes_fetched: int = 0
    blocks_fetched: int = 0
    blocks_rejected: int = 0


def _take_runs(fd: int, block_map: BlockMap, wanted: Sequence[int],
               runs: Iterable[Run], tally: _Tally, *, bundle_id: str) -> set[int]:
    """The ``runs`` answering a request for ``wanted``: write every arriving block whose
    SHA-256 matches and return their indexes. A run is split by the block map and checked
    block by block."""
    asked, arrived = set(wanted), set()
    for first, data in runs:
        covered = run_blocks(block_map, first, len(data))
        if any(index not in asked or index in arrived for index in covered):
            raise ProtocolViolation(f"peer sent blocks {covered.start} to {covered.stop - 1}, "
                                    "which were not all asked for (or came twice)")
        tally.bytes_fetched += len(data)
        run_offset = block_map.span(first)[0]
        view = memoryview(data)
        good_from = run_offset  # the verified blocks since the last bad one, written together
        for index in covered:
            offset, length = block_map.span(index)
            if hashlib.sha256(view[offset - run_offset:offset - run_offset + length]
                              ).digest() == block_map.hashes[index]:
                arrived.add(index)
                tally.blocks_fetched += 1
                continue
            tally.blocks_rejected += 1
            logger.warning("block %d of bundle %s failed its hash; fetching again",
                           index, bundle_id)
            _write(fd, view[good_from - run_offset:offset - run_offset], good_from)
            good_from = offset + length
        _write(fd, view[good_from - run_offset:], good_from)
    return arrived


def _write(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def partial_path(data_dir: Path, offer: BundleOffer) -> Path:
    directory = sync_dir(data_dir) / INCOMING_DIR_NAME
    directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    return directory / f"{offer.manifest.collection}.{offer.manifest.bundle_id}{PART_SUFFIX}"


def _partials(directory: Path, collection: str) -> list[Path]:
    return list(directory.glob(f"{collection}.*{PART_SUFFIX}"))


def has_partial(data_dir: Path, collection: str) -> bool:
    """Whether an interrupted download of some bundle of ``collection`` is kept here."""
    return bool(_partials(sync_dir(data_dir) / INCOMING_DIR_NAME, collection))


def _drop_other_partials(path: Path, collection: str) -> None:
    for stale in _partials(path.parent, collection):
        if stale != path:
            stale.unlink(missing_ok=True)


def _usable_whole(block_map: BlockMap, whole: bytes, missing: Sequence[int]) -> bool:
    """Whether the bundle's bytes sent with the offer are the first round: they are the
    bundle's size (else ``ProtocolViolation``) and no block is held (a partial file or local
    bundle appeared since the offer was asked for: then they go unused)."""
    if len(whole) != block_map.size_bytes:
        raise ProtocolViolation(f"peer sent {len(whole)} bytes as the whole bundle of "
                                f"{block_map.size_bytes}")
    return len(missing) == len(block_map.hashes)


def fetch_bundle(*, data_dir: Path, offer: BundleOffer, local_bundle: Path,
                 fetch: FetchBlocks, whole: bytes | None = None) -> FetchOutcome:
    """Assemble the offered bundle in its partial file; raises what ``fetch`` raises (the
    partial file stays for a resume) or ``BundleRefused`` when blocks keep failing their
    hash. ``whole``: the bundle's bytes as they came with the offer, the first round when no
    block is held yet (else unused); ``ProtocolViolation`` unless they are the bundle's size.
    The caller verifies the assembled file as a bundle before using it."""
    block_map = offer.block_map
    path = partial_path(data_dir, offer)
    _drop_other_partials(path, offer.manifest.collection)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        resuming = os.fstat(fd).st_size > 0  # a new partial file holds no block yet
        os.ftruncate(fd, block_map.size_bytes)
        missing = [index for index, digest in enumerate(block_map.hashes)
                   if not resuming
                   or hashlib.sha256(read_span(fd, *block_map.span(index))).digest() != digest]
        reused = len(block_map.hashes) - len(missing)
        tally = _Tally()
        rounds = FETCH_ROUNDS
        if whole is not None and _usable_whole(block_map, whole, missing):
            arrived = _take_runs(fd, block_map, missing, [(0, whole)], tally,
                                 bundle_id=offer.manifest.bundle_id)
            missing = [index for index in missing if index not in arrived]
            rounds -= 1
        elif missing:
            local = held_blocks(local_bundle, block_size_bytes=block_map.block_size_bytes)
            for index in [i for i in missing if block_map.hashes[i] in local]:
                os.pwrite(fd, local[block_map.hashes[index]], block_map.span(index)[0])
                missing.remove(index)
                reused += 1
        per_request = blocks_per_request(block_map.block_size_bytes)
        for _ in range(rounds):
            if not missing:
                break
            requests = [missing[start:start + per_request]
                        for start in range(0, len(missing), per_request)]
            missing = []
            open_requests = [fetch(requests[0])]  # the current one and the one asked ahead
            try:
                for number, wanted in enumerate(requests):
                    if number + 1 < len(requests):
                        open_requests.append(fetch(requests[number + 1]))
                    arrived = _take_runs(fd, block_map, wanted, open_requests[0], tally,
                                         bundle_id=offer.manifest.bundle_id)
                    open_requests.pop(0)
                    missing += [index for index in wanted if index not in arrived]
            finally:
                for pending in open_requests:  # after a failure: stopped, not left streaming
                    pending.close()
        if missing:
            raise BundleRefused(
                f"{len(missing)} blocks of bundle {offer.manifest.bundle_id} failed verification "
                f"{FETCH_ROUNDS} times", op="fetch bundle", hint="sync again later")
        os.fsync(fd)
    finally:
        os.close(fd)
    return FetchOutcome(path=path, bytes_fetched=tally.bytes_fetched,
                        blocks_fetched=tally.blocks_fetched, blocks_reused=reused,
                        blocks_rejected=tally.blocks_rejected)
