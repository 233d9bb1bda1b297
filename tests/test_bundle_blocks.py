"""The bundle's block layout: page-sized blocks (larger only for bundles whose block map would
pass ``MAX_MAP_BLOCKS``), so a small change to a collection changes few blocks; and blocks in
transit as runs of consecutive blocks, each block checked on its own on arrival."""

from __future__ import annotations

import os

import pytest
from bundle_samples import make_manifest
from meshdex.index.bundle_io import write_bundle
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import BundleCorrupt
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.sync.blocks import (
    MAX_BLOCK_SIZE_BYTES,
    MAX_BLOCKS_PER_REQUEST,
    MAX_MAP_BLOCKS,
    MAX_REQUEST_BYTES,
    block_map_of,
    block_size_for,
    blocks_per_request,
    request_runs,
    run_blocks,
)
from meshdex.sync.bundle_fetch import FETCH_ROUNDS, fetch_bundle, partial_path
from meshdex.sync.bundle_shelf import BundleOffer, BundleShelf
from meshdex.sync.errors import BundleRefused, ProtocolViolation, SyncError
from meshdex.sync.transport import MAX_SYNC_MESSAGE_BYTES

from tests.fakes import HashingEmbedder
from tests.tamper_proxy import flip_blocks

PAGE = 4096
COUNT = 20_000  # one-passage documents: a bundle of about 200 pages
BLOCK_SIZES = [  # (bundle bytes, block size)
    (1, PAGE),
    (100 * PAGE + 7, PAGE),
    (MAX_MAP_BLOCKS * PAGE, PAGE),
    (MAX_MAP_BLOCKS * PAGE + 1, 2 * PAGE),
    (MAX_MAP_BLOCKS * 64 * 1024, 64 * 1024),
    (10 * MAX_MAP_BLOCKS * MAX_BLOCK_SIZE_BYTES, MAX_BLOCK_SIZE_BYTES),
]


@pytest.mark.parametrize(("size_bytes", "block_size"), BLOCK_SIZES)
def test_blocks_are_pages_until_the_map_would_pass_its_bound(size_bytes, block_size) -> None:
    assert block_size_for(size_bytes) == block_size


def test_a_request_asks_for_a_bounded_number_of_bytes() -> None:
    assert blocks_per_request(PAGE) == MAX_BLOCKS_PER_REQUEST
    assert blocks_per_request(PAGE) * PAGE == MAX_REQUEST_BYTES
    assert blocks_per_request(MAX_BLOCK_SIZE_BYTES) == 1


def test_a_run_of_a_whole_request_fits_in_one_grpc_message() -> None:
    assert MAX_BLOCK_SIZE_BYTES <= MAX_REQUEST_BYTES  # a single block always makes a run
    assert MAX_REQUEST_BYTES + 64 <= MAX_SYNC_MESSAGE_BYTES  # with the message's own fields


SMALL_MAP = block_map_of(bytes(10 * PAGE + 100), block_size_bytes=PAGE)  # 11 blocks, last short
RUN_CASES = [  # (requested indexes, run bytes, runs as (first, count))
    (range(11), 4 * PAGE, [(0, 4), (4, 4), (8, 3)]),
    (range(11), 1, [(i, 1) for i in range(11)]),  # a block bigger than a run: alone
    ([0, 1, 3, 4, 5, 10], 1 << 20, [(0, 2), (3, 3), (10, 1)]),
    ([5, 4, 6, 7], 1 << 20, [(5, 1), (4, 1), (6, 2)]),  # consecutive in request and file
]


@pytest.mark.parametrize(("indexes", "run_bytes", "runs"), RUN_CASES)
def test_requested_blocks_go_out_as_runs_of_consecutive_blocks(indexes, run_bytes, runs):
    assert list(request_runs(SMALL_MAP, indexes, run_bytes=run_bytes)) == runs


BAD_RUNS = [  # (first block, run bytes, what the error says)
    (0, PAGE + 1, "does not end on a block boundary"),
    (10, PAGE, "does not end on a block boundary"),  # past the bundle's end
    (9, 2 * PAGE, "does not end on a block boundary"),
    (11, PAGE, "runs start at one of the bundle's 11 blocks"),
    (0, 0, "carry 1 to"),
    (0, MAX_REQUEST_BYTES + PAGE, "carry 1 to"),
]


@pytest.mark.parametrize(("first", "size", "message"), BAD_RUNS)
def test_a_run_that_is_not_whole_blocks_of_the_bundle_is_a_protocol_violation(
        first, size, message) -> None:
    with pytest.raises(ProtocolViolation, match=message):
        run_blocks(SMALL_MAP, first, size)
    assert run_blocks(SMALL_MAP, 9, PAGE + 100) == range(9, 11)  # the short last block


def _offer(data: bytes) -> BundleOffer:
    return BundleOffer(manifest=make_manifest(),
                       block_map=block_map_of(data, block_size_bytes=PAGE))


def _peer(data: bytes, offer: BundleOffer, *, damage=frozenset(), run_bytes=8 * PAGE):
    """A peer serving ``data`` in runs; blocks in ``damage`` arrive damaged the first time."""
    asked: list[list[int]] = []
    damaged: set[int] = set()

    def fetch(indexes):
        asked.append(list(indexes))
        for first, count in request_runs(offer.block_map, indexes, run_bytes=run_bytes):
            start, end = first * PAGE, min((first + count) * PAGE, len(data))
            now = {i for i in range(first, first + count) if i in damage and i not in damaged}
            damaged.update(now)
            yield first, flip_blocks(offer.block_map, first, data[start:end], now)
    return fetch, asked


def test_a_damaged_block_in_a_run_is_refetched_alone_and_the_rest_of_the_run_kept(tmp_path):
    data = os.urandom(40 * PAGE + 123)
    offer = _offer(data)
    fetch, asked = _peer(data, offer, damage={3, 17, 40})
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch)
    assert asked == [list(range(41)), [3, 17, 40]]
    assert (outcome.blocks_fetched, outcome.blocks_rejected) == (41, 3)
    assert outcome.path.read_bytes() == data


def test_a_resumed_fetch_asks_only_for_blocks_the_partial_file_lacks(tmp_path):
    data = os.urandom(20 * PAGE)
    offer = _offer(data)
    partial = partial_path(tmp_path, offer)
    partial.write_bytes(data[:5 * PAGE])  # an earlier session got the first five blocks
    fetch, asked = _peer(data, offer)
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch)
    assert asked == [list(range(5, 20))]
    assert (outcome.blocks_reused, outcome.blocks_fetched) == (5, 15)
    assert outcome.path.read_bytes() == data


def test_a_whole_bundle_sent_with_the_offer_is_checked_block_by_block_and_needs_no_request(
        tmp_path):
    data = os.urandom(30 * PAGE + 55)
    offer = _offer(data)
    fetch, asked = _peer(data, offer)
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch, whole=data)
    assert asked == []  # no FetchBlocks call at all
    assert (outcome.blocks_fetched, outcome.blocks_rejected) == (31, 0)
    assert outcome.bytes_fetched == len(data)
    assert outcome.path.read_bytes() == data


def test_damaged_blocks_of_a_whole_bundle_are_rejected_and_fetched_alone(tmp_path):
    data = os.urandom(30 * PAGE + 55)
    offer = _offer(data)
    fetch, asked = _peer(data, offer)
    damaged = flip_blocks(offer.block_map, 0, data, {2, 9, 30})
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch, whole=damaged)
    assert asked == [[2, 9, 30]]  # the other blocks of the whole bundle were kept
    assert (outcome.blocks_fetched, outcome.blocks_rejected) == (31, 3)
    assert outcome.path.read_bytes() == data


def test_a_whole_bundle_counts_as_the_first_of_the_fetch_rounds(tmp_path):
    data = os.urandom(10 * PAGE)
    offer = _offer(data)
    asked: list[list[int]] = []

    def always_damaged(indexes):  # block 4 is wrong however often it is asked for
        asked.append(list(indexes))
        for first, count in request_runs(offer.block_map, indexes, run_bytes=8 * PAGE):
            yield first, flip_blocks(offer.block_map, first,
                                     data[first * PAGE:(first + count) * PAGE], {4})

    with pytest.raises(BundleRefused, match=f"failed verification {FETCH_ROUNDS} times"):
        fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                     fetch=always_damaged, whole=flip_blocks(offer.block_map, 0, data, {4}))
    assert asked == [[4]] * (FETCH_ROUNDS - 1)
    assert partial_path(tmp_path, offer).read_bytes()[:4 * PAGE] == data[:4 * PAGE]


def test_a_whole_bundle_of_the_wrong_size_is_a_protocol_violation(tmp_path):
    data = os.urandom(10 * PAGE)
    offer = _offer(data)
    fetch, asked = _peer(data, offer)
    with pytest.raises(ProtocolViolation, match="as the whole bundle"):
        fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                     fetch=fetch, whole=data[:-PAGE])
    assert asked == []


def test_a_whole_bundle_is_unused_when_blocks_are_held_already(tmp_path):
    """A partial download appeared since the offer was asked for: the bytes that came with it
    are not needed (and not counted); only the blocks the partial file lacks are fetched."""
    data = os.urandom(20 * PAGE)
    offer = _offer(data)
    partial_path(tmp_path, offer).write_bytes(data[:5 * PAGE])
    fetch, asked = _peer(data, offer)
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch, whole=data)
    assert asked == [list(range(5, 20))]
    assert (outcome.blocks_reused, outcome.blocks_fetched) == (5, 15)
    assert outcome.path.read_bytes() == data


WRONG_RUNS = [  # (what the peer sends when asked, what the error says)
    (lambda data: [(0, data[:PAGE + 7])], "does not end on a block boundary"),
    (lambda data: [(0, data[:PAGE]), (0, data[:2 * PAGE])], "came twice"),
    (lambda data: [(3, data[3 * PAGE:5 * PAGE])], "not all asked for"),  # 3, 4 are held
    (lambda data: [(5, bytes(MAX_REQUEST_BYTES + PAGE))], "carry 1 to"),
]


@pytest.mark.parametrize(("sent", "message"), WRONG_RUNS)
def test_a_peer_sending_runs_it_was_not_asked_for_is_refused_and_held_blocks_kept(
        tmp_path, sent, message) -> None:
    data = os.urandom(12 * PAGE)
    offer = _offer(data)
    local = tmp_path / "current.leann"
    local.write_bytes(data[:5 * PAGE])  # blocks 0-4 held in the current bundle

    def fetch(indexes):
        assert list(indexes) == list(range(5, 12))
        yield from sent(data)

    with pytest.raises(ProtocolViolation, match=message):
        fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=local, fetch=fetch)
    assert partial_path(tmp_path, offer).read_bytes()[:5 * PAGE] == data[:5 * PAGE]


def test_a_delta_build_after_one_percent_changed_changes_few_blocks(tmp_path) -> None:
    """Issue 11's figure: fetched blocks and the block map within 2% of the bundle plus
    16 KiB (64 KiB blocks changed 37% of this bundle)."""
    node = Node.open(tmp_path / "n")
    embedder = HashingEmbedder()
    node.indexes = IndexManager(node.store, embedder_factory=lambda _info: embedder)
    try:
        node.create_collection("notes", embedder=EmbedderSpec())
        node.upsert_documents("notes", [DocumentInput(id=f"d{i:05d}", text=f"note {i} on "
                                                      f"topic {i % 31}") for i in range(COUNT)])
        node.build("notes")
        path = node.indexes.bundle_path("notes")
        before = set(block_map_of(path.read_bytes()).hashes)
        node.upsert_documents("notes", [DocumentInput(id=f"d{i:05d}", text=f"revised {i}")
                                        for i in range(0, COUNT, 100)])
        assert node.build("notes").action == "delta"
        after = path.read_bytes()
        block_map = block_map_of(after)
        changed = sum(block_map.span(i)[1] for i, digest in enumerate(block_map.hashes)
                      if digest not in before)
        map_bytes = 32 * len(block_map.hashes)
        assert changed + map_bytes <= 0.02 * len(after) + 16 * 1024
        assert changed < len(after) // 40
    finally:
        node.close()


def test_the_server_sends_runs_within_its_run_size_and_refuses_an_oversize_request(tmp_path):
    node = Node.open(tmp_path / "n")
    try:
        path = node.indexes.bundle_path("notes")
        path.parent.mkdir(parents=True, exist_ok=True)
        data_bytes = 300 * 16 * 1024  # blocks of 16 KiB: 256 make a whole request
        manifest = write_bundle(path, make_manifest(), {"codes": os.urandom(data_bytes)})
        shelf = BundleShelf(node, run_bytes=100 * 1024)
        block_map = shelf.offer("notes").block_map
        assert block_map.block_size_bytes == 16 * 1024
        assert blocks_per_request(block_map.block_size_bytes) == 256
        data = path.read_bytes()
        runs = list(shelf.runs("notes", manifest.bundle_id, [*range(10), 12, 13]))
        assert [(first, len(run)) for first, run in runs] == [
            (0, 6 * 16 * 1024), (6, 4 * 16 * 1024), (12, 2 * 16 * 1024)]
        assert all(run == data[first * 16 * 1024:first * 16 * 1024 + len(run)]
                   for first, run in runs)
        with pytest.raises(ProtocolViolation, match="at most 256 blocks of 16384 bytes"):
            list(shelf.runs("notes", manifest.bundle_id, range(257)))
    finally:
        node.close()



def test_a_damaged_bundle_is_reported_not_offered_or_taken_for_none(tmp_path):
    node = Node.open(tmp_path / "n")
    try:
        shelf = BundleShelf(node)
        assert shelf.offer("notes") is None  # no bundle at all
        path = node.indexes.bundle_path("notes")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a bundle at all" * 100)
        with pytest.raises(BundleCorrupt):
            shelf.offer("notes")
    finally:
        node.close()


class _Request:
    """One block request to a fake peer, logging when it is asked for, read and closed."""

    def __init__(self, log: list, data: bytes, block_map, indexes, *, fails: bool) -> None:
        self.log, self.data, self.block_map = log, data, block_map
        self.first, self.indexes, self.fails = indexes[0], list(indexes), fails
        log.append(("ask", self.first))

    def __iter__(self):
        self.log.append(("read", self.first))
        if self.fails:
            raise SyncError("connection dropped")
        for first, count in request_runs(self.block_map, self.indexes):
            yield first, self.data[first * PAGE:(first + count) * PAGE]

    def close(self) -> None:
        self.log.append(("close", self.first))


@pytest.mark.parametrize("fails", [False, True])
def test_the_next_request_is_asked_for_while_the_current_one_arrives(tmp_path, fails) -> None:
    """The peer never waits between requests; after a failure the request asked for ahead
    is stopped, not left streaming."""
    data = os.urandom(3 * MAX_BLOCKS_PER_REQUEST * PAGE)
    offer = _offer(data)
    log: list = []
    starts = [0, MAX_BLOCKS_PER_REQUEST, 2 * MAX_BLOCKS_PER_REQUEST]

    def fetch(indexes):
        return _Request(log, data, offer.block_map, indexes,
                        fails=fails and indexes[0] == starts[1])

    if fails:
        with pytest.raises(SyncError):
            fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                         fetch=fetch)
        assert [entry for entry in log if entry[0] != "close"] == [
            ("ask", starts[0]), ("ask", starts[1]), ("read", starts[0]), ("ask", starts[2]),
            ("read", starts[1])]
        assert {("close", starts[1]), ("close", starts[2])} <= set(log)
        return
    outcome = fetch_bundle(data_dir=tmp_path, offer=offer, local_bundle=tmp_path / "none",
                           fetch=fetch)
    assert log == [("ask", starts[0]), ("ask", starts[1]), ("read", starts[0]),
                   ("ask", starts[2]), ("read", starts[1]), ("read", starts[2])]
    assert outcome.path.read_bytes() == data
