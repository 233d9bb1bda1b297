"""A bundle transfer through a proxy that damages it (``tamper_proxy.py``: a flipped byte,
a stream cut short, a dropped connection), and a peer whose blocks keep failing their hash:
the receiver keeps its previous bundle, searchable, and the next session resumes without
fetching again the blocks it already holds."""

from __future__ import annotations

import dataclasses

import pytest
from meshdex.node.records import DocumentInput
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import wire
from meshdex.sync.blocks import block_map_of
from meshdex.sync.bundle_fetch import FETCH_ROUNDS, partial_path
from meshdex.sync.bundle_shelf import BundleShelf
from meshdex.sync.client import Session
from meshdex.sync.errors import BundleRefused
from meshdex.sync.transport import pinned_channel

from tests.fakes import HashingEmbedder
from tests.sync_support import pair, start_sync_node, stop_sync_node
from tests.tamper_proxy import DROP, FLIP, TRUNCATE, TamperProxy, flip_blocks

DOCUMENT_COUNT = 3000  # a bundle of about 60 pages
CUT_AFTER_BYTES = 120_000  # past the handshake and the documents, inside the blocks
RUN_BYTES = 16 * 1024
QUERY = "note 17 on topic 6"


def _docs(edition: str = "") -> list[DocumentInput]:
    return [DocumentInput(id=f"d{i:05d}", text=f"note {i}{edition} on topic {i % 11}")
            for i in range(DOCUMENT_COUNT)]


def _start(tmp_path, name, policy):
    node = start_sync_node(tmp_path, name, embedder=HashingEmbedder(), index_policy=policy,
                           sync_interval_s=3600)
    node.service.scheduler.stop()  # sessions run when the test says so
    return node


def _session(receiver, sender):
    peer = receiver.service.trust.get(sender.device_id)
    report = Session(receiver.service.engine, receiver.service.identity, peer,
                     trust=receiver.service.trust).run()
    [collection] = report.collections
    return collection


def _hits(node):
    return [hit.document_id for hit in node.node.search("notes", QUERY, top_k=3).hits]


@pytest.fixture
def nodes(tmp_path):
    """A (built, generation 2 not yet fetched) and B (policy fetch, holding generation 1)."""
    a, b = _start(tmp_path, "a", "auto"), _start(tmp_path, "b", "fetch")
    # Runs of a few blocks, so that the fault lands after some whole runs have arrived (a
    # run in flight when the connection ends is lost with it, like any gRPC message).
    a.service.engine.shelf = BundleShelf(a.node, run_bytes=RUN_BYTES)
    a.node.create_collection("notes")
    a.node.upsert_documents("notes", _docs())
    a.node.build("notes")
    pair(a, b)
    assert _session(b, a).decision == "use"
    a.node.upsert_documents("notes", _docs(" revised")[::10])
    a.node.build("notes", rebuild=True)  # new codes: almost every block changes
    yield a, b
    stop_sync_node(b)
    stop_sync_node(a)


def _through(proxy: TamperProxy, receiver, sender) -> None:
    trust = receiver.service.trust
    trust.add(dataclasses.replace(trust.get(sender.device_id), addresses=(proxy.address,)),
              replace_existing=True)


@pytest.mark.parametrize("fault", [FLIP, TRUNCATE, DROP])
def test_a_damaged_transfer_keeps_the_old_bundle_and_resumes_without_refetching(
        nodes, fault) -> None:
    a, b = nodes
    held_before = set(block_map_of(b.node.indexes.bundle_path("notes").read_bytes()).hashes)
    offered = block_map_of(a.node.indexes.bundle_path("notes").read_bytes())
    in_old_bundle = sum(digest in held_before for digest in offered.hashes)
    assert _hits(b)[0] == "d00017"
    proxy = TamperProxy(a.sync_address)
    try:
        _through(proxy, b, a)
        proxy.arm(fault, CUT_AFTER_BYTES)
        failed = _session(b, a)
        assert proxy.faults_applied == 1
        assert failed.error is not None and "fetch blocks" in failed.error, failed
        assert b.node.indexes.manifest("notes").generation == 1  # the previous bundle stays
        assert _hits(b)[0] == "d00017"  # and answers from it
        proxy.disarm()
        resumed = _session(b, a)
    finally:
        proxy.close()
    assert resumed.error is None and resumed.decision == "use", resumed
    assert b.node.indexes.manifest("notes").generation == 2
    assert resumed.blocks_fetched + resumed.blocks_reused == len(offered.hashes)
    # blocks that arrived before the fault were kept in the partial file, not fetched again
    assert resumed.blocks_reused > in_old_bundle
    assert _hits(b) == _hits(a)


def test_blocks_that_keep_failing_their_hash_refuse_the_bundle_and_keep_the_old_one(
        nodes) -> None:
    a, b = nodes
    peer = b.service.trust.get(a.device_id)
    with pinned_channel(peer.addresses[0], peer.cert_pem, identity=b.service.identity) as ch:
        stub = sync_pb2_grpc.MeshdexSyncStub(ch)
        offer = wire.offer_from_wire(stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes")))
        asked: list[int] = []

        def corrupting(indexes):  # a block source whose block 1 is always damaged
            asked.extend(indexes)
            for run in stub.FetchBlocks(pb.FetchBlocksRequest(
                    collection="notes", bundle_id=offer.manifest.bundle_id, blocks=indexes)):
                yield run.first_block, flip_blocks(offer.block_map, run.first_block, run.data,
                                                   {1})

        with pytest.raises(BundleRefused, match=f"failed verification {FETCH_ROUNDS} times"):
            b.service.engine.bundles.receive("a", offer, corrupting)
    assert asked.count(1) == FETCH_ROUNDS  # asked again each round, and only it
    assert len(asked) == len(set(asked)) + FETCH_ROUNDS - 1
    assert b.node.indexes.manifest("notes").generation == 1
    assert _hits(b)[0] == "d00017"
    assert partial_path(b.node.data_dir, offer).exists()  # the good blocks stay for a resume
