"""The bundle's block layout: page-sized blocks (larger only for bundles whose block map would
pass ``MAX_MAP_BLOCKS``), so a small change to a collection changes few blocks."""

from __future__ import annotations

import pytest
from meshdex.index.embedders import EmbedderSpec
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
)

from tests.fakes import HashingEmbedder

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
