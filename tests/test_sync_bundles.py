"""Bundles between paired devices over real mutual TLS: signed offers, block transfer that
fetches only what is missing and resumes, and the receiver's decision (index_policy)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from meshdex.index.bundle_io import copy_bundle, open_bundle
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.config import NodeConfig
from meshdex.node.records import DocumentInput
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import bundle_receive, client, wire
from meshdex.sync import service as sync_service
from meshdex.sync.admin_wire import session_report_from_wire, session_report_to_wire
from meshdex.sync.blocks import MAX_BLOCKS_PER_REQUEST, WHOLE_BUNDLE_BYTES, run_blocks
from meshdex.sync.bundle_fetch import fetch_bundle, partial_path
from meshdex.sync.client import Session, SessionReport
from meshdex.sync.errors import ProtocolViolation, SyncError
from meshdex.sync.service import BUILD_DEBOUNCE_S
from meshdex.sync.transport import pinned_channel

from tests.fakes import HashingEmbedder
from tests.sync_support import pair, start_sync_node, stop_sync_node, wait_for
from tests.tamper_proxy import flip_blocks

LOCAL = EmbedderSpec()  # a local embedder: every node here builds with its counting fake
DOCS = {f"d{i:03d}": f"note {i} on topic {i % 11}, colour {i % 5}, " + "filler words " * 40
        for i in range(300)}
SYNC_BUNDLE_KEYS = ("bundle_bytes_fetched", "bundle_bytes_total", "blocks_fetched",
                    "blocks_reused", "decision", "reason")
QUERIES = ("topic 3 colour 2", "note 17", "topic 9 filler")


def _start(tmp_path, name, embedder, policy):
    node = start_sync_node(tmp_path, name, embedder=embedder, index_policy=policy,
                           sync_interval_s=3600)
    node.service.scheduler.stop()  # sessions run when a test says so, one at a time
    return node


@pytest.fixture
def cluster(tmp_path):
    """A (built, policy auto) paired with B (policy fetch), both counting model calls."""
    embedders = {"a": HashingEmbedder(), "b": HashingEmbedder()}
    nodes = {"a": _start(tmp_path, "a", embedders["a"], "auto"),
             "b": _start(tmp_path, "b", embedders["b"], "fetch")}
    a = nodes["a"]
    a.node.create_collection("notes", embedder=LOCAL)
    a.node.upsert_documents("notes", [DocumentInput(id=k, text=v) for k, v in DOCS.items()])
    a.node.build("notes")
    pair(a, nodes["b"])
    yield nodes, embedders
    for node in nodes.values():
        stop_sync_node(node)


def _sync(receiver, sender):
    peer = receiver.service.trust.get(sender.device_id)
    report = Session(receiver.service.engine, receiver.service.identity, peer,
                     trust=receiver.service.trust).run()
    assert report.error is None, report.error
    [collection] = report.collections
    assert collection.error is None, collection.error
    return collection


def _hits(node, query):
    return [(hit.document_id, round(hit.score, 5)) for hit in
            node.node.search("notes", query, top_k=5).hits]


def _decisions(node):
    return [(r.trigger, r.decision, " ".join(r.reasons))
            for r in node.node.indexes.decisions.recent(collection="notes")]


@contextmanager
def _stub_of(server, *, asked_by) -> Iterator[sync_pb2_grpc.MeshdexSyncStub]:
    """A sync stub from ``asked_by`` to its paired ``server`` over the pinned mTLS channel."""
    peer = asked_by.service.trust.get(server.device_id)
    with pinned_channel(peer.addresses[0], peer.cert_pem,
                        identity=asked_by.service.identity) as channel:
        yield sync_pb2_grpc.MeshdexSyncStub(channel)


def test_policy_fetch_installs_the_peers_bundle_without_embedding_a_passage(cluster) -> None:
    nodes, embedders = cluster
    a, b = nodes["a"], nodes["b"]
    report = _sync(b, a)
    assert report.received == len(DOCS)
    assert report.decision == "use" and "index_policy fetch" in report.reason
    assert report.bundle_bytes_total == a.node.indexes.bundle_path("notes").stat().st_size
    assert report.bundle_bytes_fetched == report.bundle_bytes_total
    assert report.blocks_reused == 0 and report.blocks_fetched > 1
    assert embedders["b"].texts_embedded == 0  # no passage embedded on B
    a_before = embedders["a"].texts_embedded
    for query in QUERIES:
        assert _hits(b, query) == _hits(a, query)
    # Searching recomputes candidates' embeddings on both alike (LEANN): B does no more.
    assert embedders["b"].texts_embedded == embedders["a"].texts_embedded - a_before
    trigger, decision, reasons = _decisions(b)[0]
    assert (trigger, decision) == ("sync", "use") and "fetched from" in reasons
    status = b.node.status()
    assert any(d.decision == "use" and d.trigger == "sync"
               for d in status.decisions), status.decisions
    again = _sync(b, a)
    assert (again.decision, again.bundle_bytes_fetched) == ("unchanged", 0)


def test_a_changed_bundle_fetches_only_the_blocks_b_does_not_hold(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    _sync(b, a)
    a.node.upsert_documents("notes", [DocumentInput(id="d000", text="a wholly new note")])
    assert a.node.build("notes").action == "delta"
    report = _sync(b, a)
    assert report.decision == "use"
    assert report.blocks_reused > 0
    assert report.bundle_bytes_fetched < report.bundle_bytes_total
    assert _hits(b, "wholly new") == _hits(a, "wholly new")


def test_another_fingerprint_refuses_the_codes_and_rebuilds_locally(tmp_path, cluster) -> None:
    nodes, _ = cluster
    a = nodes["a"]
    other = HashingEmbedder(dim=128)  # another model hash
    c = _start(tmp_path, "c", other, "fetch")
    try:
        pair(a, c)
        report = _sync(c, a)
        assert report.decision == "rebuild_locally"
        assert "building locally" in report.reason and report.bundle_bytes_fetched == 0
        manifest = wait_for(lambda: c.node.indexes.manifest("notes"), what="C's own build")
        assert manifest.fingerprint == other.fingerprint
        assert manifest.signer_device_id == c.device_id
        assert any(entry[:2] == ("sync", "rebuild_locally") and "model" in entry[2]
                   for entry in _decisions(c))
    finally:
        stop_sync_node(c)


def test_an_interrupted_transfer_resumes_without_refetching_held_blocks(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    with _stub_of(a, asked_by=b) as stub:
        offer = wire.offer_from_wire(stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes")))
        total = len(offer.block_map.hashes)

        def dropping(indexes):  # the first run cut after three blocks, then the line drops
            for run in stub.FetchBlocks(pb.FetchBlocksRequest(
                    collection="notes", bundle_id=offer.manifest.bundle_id, blocks=indexes)):
                yield run.first_block, run.data[:3 * offer.block_map.block_size_bytes]
                raise SyncError("connection dropped")

        with pytest.raises(SyncError, match="dropped"):
            fetch_bundle(data_dir=b.node.data_dir, offer=offer,
                         local_bundle=b.node.indexes.bundle_path("notes"), fetch=dropping)
    assert partial_path(b.node.data_dir, offer).exists()
    assert b.node.indexes.manifest("notes") is None  # nothing installed by a failed transfer
    report = _sync(b, a)
    assert report.decision == "use"
    assert (report.blocks_reused, report.blocks_fetched) == (3, total - 3)
    assert not partial_path(b.node.data_dir, offer).exists()


def test_corrupted_blocks_are_rejected_and_fetched_again(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    with _stub_of(a, asked_by=b) as stub:
        offer = wire.offer_from_wire(stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes")))
        flipped: set[int] = set()
        asked: list[list[int]] = []

        def flipping(indexes):  # every even block damaged the first time it is sent
            asked.append(list(indexes))
            for run in stub.FetchBlocks(pb.FetchBlocksRequest(
                    collection="notes", bundle_id=offer.manifest.bundle_id, blocks=indexes)):
                covered = run_blocks(offer.block_map, run.first_block, len(run.data))
                damage = {i for i in covered if i % 2 == 0 and i not in flipped}
                flipped.update(damage)
                yield run.first_block, flip_blocks(offer.block_map, run.first_block, run.data,
                                                   damage)

        outcome = fetch_bundle(data_dir=b.node.data_dir, offer=offer,
                               local_bundle=b.node.indexes.bundle_path("notes"), fetch=flipping)
    assert outcome.blocks_rejected == len(flipped) > 0
    assert outcome.blocks_fetched == len(offer.block_map.hashes)
    # the odd blocks sharing a run with damaged ones were kept: only the damaged are asked again
    assert asked[1:] == [sorted(flipped)]
    with open_bundle(outcome.path, verify="full") as bundle:
        assert bundle.manifest.bundle_id == offer.manifest.bundle_id


def test_a_small_bundle_comes_whole_with_the_offer_to_a_receiver_holding_none(
        cluster, monkeypatch) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    fetch_calls: list[list[int]] = []
    real_fetcher = client.block_fetcher

    def counting_fetcher(*args):
        fetch = real_fetcher(*args)

        def counted(indexes):
            fetch_calls.append(list(indexes))
            return fetch(indexes)
        return counted

    monkeypatch.setattr(client, "block_fetcher", counting_fetcher)
    assert a.node.indexes.bundle_path("notes").stat().st_size <= WHOLE_BUNDLE_BYTES
    report = _sync(b, a)
    assert report.decision == "use"
    assert report.blocks_fetched == len(a.service.engine.shelf.offer("notes").block_map.hashes)
    assert fetch_calls == []  # the offer brought every block: no FetchBlocks call
    assert _hits(b, "topic 3 colour 2") == _hits(a, "topic 3 colour 2")
    a.node.upsert_documents("notes", [DocumentInput(id="d000", text="a wholly new note")])
    a.node.build("notes")
    again = _sync(b, a)  # B holds blocks now: it asks for the missing ones only
    assert again.decision == "use" and again.blocks_reused > 0
    assert sum(map(len, fetch_calls)) == again.blocks_fetched > 0


def test_the_receiver_asks_for_the_whole_bundle_only_while_it_holds_no_block(
        tmp_path, cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    receiver = b.service.engine.bundles
    assert receiver.whole_bundle_max_bytes("notes") == WHOLE_BUNDLE_BYTES
    offer = a.service.engine.shelf.offer("notes")
    partial = partial_path(b.node.data_dir, offer)
    partial.write_bytes(b"")  # an interrupted download is kept: resume it instead
    assert receiver.whole_bundle_max_bytes("notes") == 0
    partial.unlink()
    _sync(b, a)
    assert receiver.whole_bundle_max_bytes("notes") == 0  # B has a bundle of it now
    c = _start(tmp_path, "c", HashingEmbedder(), "build")
    try:  # policy build never installs a peer's bundle: never worth sending it whole
        assert c.service.engine.bundles.whole_bundle_max_bytes("notes") == 0
    finally:
        stop_sync_node(c)


def test_the_server_sends_the_whole_bundle_only_if_asked_and_small_enough(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    data = a.node.indexes.bundle_path("notes").read_bytes()
    with _stub_of(a, asked_by=b) as stub:

        def whole(**asked):
            offer = stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes", **asked))
            assert offer.has_bundle
            return offer.whole_bundle

        assert whole() == b""  # what a receiver predating whole_bundle_max_bytes asks
        assert whole(whole_bundle_max_bytes=len(data) - 1) == b""
        assert whole(whole_bundle_max_bytes=len(data)) == data
        assert whole(whole_bundle_max_bytes=2**32 - 1) == data


def test_a_damaged_whole_bundle_from_the_offer_is_mended_with_fetch_blocks(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    with _stub_of(a, asked_by=b) as stub:
        offer, whole = client.request_offer(stub, a.device_id, "notes",
                                            whole_up_to=WHOLE_BUNDLE_BYTES)
        assert whole is not None and len(whole) == offer.block_map.size_bytes
        damage = set(range(0, len(offer.block_map.hashes), 3))
        fetch = client.block_fetcher(stub, a.device_id, "notes", offer.manifest.bundle_id)
        asked: list[list[int]] = []

        def recorded(indexes):
            asked.append(list(indexes))
            return fetch(indexes)

        outcome = fetch_bundle(data_dir=b.node.data_dir, offer=offer,
                               local_bundle=b.node.indexes.bundle_path("notes"), fetch=recorded,
                               whole=flip_blocks(offer.block_map, 0, whole, damage))
    assert asked == [sorted(damage)]
    assert outcome.blocks_rejected == len(damage)
    with open_bundle(outcome.path, verify="full") as bundle:
        assert bundle.manifest.bundle_id == offer.manifest.bundle_id


def test_a_whole_bundle_bigger_than_asked_for_is_a_protocol_violation(cluster) -> None:
    nodes, _ = cluster
    a = nodes["a"]
    offer = a.service.engine.shelf.offer("notes")
    sent = wire.offer_to_wire(offer, a.node.indexes.bundle_path("notes").read_bytes())

    class Overgenerous:  # a peer that sends the whole bundle although it is too big
        def GetBundleOffer(self, request, timeout):
            return sent

    with pytest.raises(ProtocolViolation, match="at most 4096 were asked for"):
        client.request_offer(Overgenerous(), a.device_id, "notes", whole_up_to=4096)


def test_an_older_generation_offered_again_is_refused(cluster, tmp_path) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    old = a.node.indexes.bundle_path("notes")
    kept = tmp_path / "old.leann"
    kept.write_bytes(old.read_bytes())
    _sync(b, a)
    a.node.upsert_documents("notes", [DocumentInput(id="d001", text="changed again")])
    a.node.build("notes")
    assert _sync(b, a).decision == "use"
    # A's disk rolls back to the older, validly signed generation (a replay).
    kept.replace(old)
    report = _sync(b, a)
    assert report.decision == "refuse" and "no rollback" in report.reason
    assert report.bundle_bytes_fetched == 0
    assert _hits(b, "changed again")[0][0] == "d001"


def test_an_unsigned_bundle_offered_in_a_session_is_refused(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    path = a.node.indexes.bundle_path("notes")
    with open_bundle(path) as bundle:  # a changed copy without a signer loses the signature
        copy_bundle(bundle, path.with_name("unsigned.leann"), drop_cache=True)
    path.with_name("unsigned.leann").replace(path)
    report = _sync(b, a)
    assert report.decision == "refuse" and "is unsigned" in report.reason
    assert b.node.indexes.manifest("notes") is None
    assert ("sync", "refuse") == _decisions(b)[0][:2]


POLICY_CASES = [  # (B's policy, B holds a document A lacks, decision on A's bundle)
    ("fetch", False, "use"),
    ("fetch", True, "apply_local_delta"),
    ("auto", False, "use"),
    ("auto", True, "build"),
    ("build", False, "build"),
]


@pytest.mark.parametrize(("policy", "own_document", "decision"), POLICY_CASES)
def test_index_policy_decides_between_fetching_and_building(tmp_path, cluster, policy,
                                                            own_document, decision) -> None:
    nodes, _ = cluster
    embedder = HashingEmbedder()
    b = _start(tmp_path, f"b-{policy}", embedder, policy)
    try:
        pair(nodes["a"], b)
        if own_document:
            b.node.create_collection("notes", embedder=LOCAL)
            b.node.upsert_documents("notes", [DocumentInput(id="mine", text="only on b")])
        report = _sync(b, nodes["a"])
        assert report.decision == decision, report.reason
        fetched = decision in ("use", "apply_local_delta")
        assert (report.bundle_bytes_fetched > 0) == fetched
        if decision == "apply_local_delta":  # installed, then only its own document embedded
            assert embedder.texts_embedded == 1
            assert _hits(b, "only on b")[0][0] == "mine"
        if decision == "build":
            wait_for(lambda: b.node.indexes.manifest("notes"), what="the local build")
            assert embedder.texts_embedded >= len(DOCS)
    finally:
        stop_sync_node(b)


def test_blocks_of_a_replaced_bundle_are_refused_by_the_server(cluster) -> None:
    nodes, _ = cluster
    a, b = nodes["a"], nodes["b"]
    with _stub_of(a, asked_by=b) as stub:
        offer = wire.offer_from_wire(stub.GetBundleOffer(pb.BundleOfferRequest(collection="notes")))
        a.node.upsert_documents("notes", [DocumentInput(id="d002", text="replaced")])
        a.node.build("notes")
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.FetchBlocks(pb.FetchBlocksRequest(
                collection="notes", bundle_id=offer.manifest.bundle_id, blocks=[0])))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no longer current" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.FetchBlocks(pb.FetchBlocksRequest(
                collection="notes", bundle_id=offer.manifest.bundle_id,
                blocks=list(range(MAX_BLOCKS_PER_REQUEST + 1)))))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_sync_report_carries_bundle_figures_through_the_admin_wire(cluster) -> None:
    nodes, _ = cluster
    report = _sync(nodes["b"], nodes["a"])
    session = SessionReport(peer="p", name="n", collections=[report])
    again = session_report_from_wire(session_report_to_wire(session)).to_dict()
    [collection] = again["collections"]
    assert {key: collection[key] for key in SYNC_BUNDLE_KEYS} == {
        key: getattr(report, key) for key in SYNC_BUNDLE_KEYS}
    assert collection["decision"] == "use" and collection["blocks_fetched"] > 0


def test_index_policy_must_be_known() -> None:
    with pytest.raises(InvalidArgument, match="index_policy must be one of fetch, build, auto"):
        NodeConfig(index_policy="sometimes").validate()


def test_the_sender_does_not_take_back_its_own_index_from_the_receiver(cluster) -> None:
    nodes, embedders = cluster
    a, b = nodes["a"], nodes["b"]
    _sync(b, a)
    generation = a.node.indexes.manifest("notes").generation
    embedded = embedders["a"].texts_embedded
    report = _sync(a, b)  # B offers the bundle it installed (re-signed by B)
    assert report.decision == "unchanged" and report.bundle_bytes_fetched == 0
    assert "already holds every document" in report.reason
    assert a.node.indexes.manifest("notes").generation == generation
    assert embedders["a"].texts_embedded == embedded


def _slow_fetch(monkeypatch, seconds: float) -> None:
    """Every bundle transfer takes ``seconds`` longer (a slow link): longer than the build
    debounce, so a build on arrival would run before the bundle is installed."""
    fetch = bundle_receive.fetch_bundle

    def slow(**kwargs):
        time.sleep(seconds)
        return fetch(**kwargs)

    monkeypatch.setattr(bundle_receive, "fetch_bundle", slow)


def test_policy_auto_installs_the_sessions_bundle_instead_of_embedding_what_arrived(
        tmp_path, cluster, monkeypatch) -> None:
    nodes, _ = cluster
    monkeypatch.setattr(sync_service, "BUNDLE_GRACE_S", 3 * BUILD_DEBOUNCE_S)
    _slow_fetch(monkeypatch, 2 * BUILD_DEBOUNCE_S)
    embedder = HashingEmbedder()
    b = _start(tmp_path, "b-auto", embedder, "auto")
    try:
        pair(nodes["a"], b)
        report = _sync(b, nodes["a"])
        assert report.received == len(DOCS) and report.decision == "use", report.reason
        time.sleep(4 * BUILD_DEBOUNCE_S)  # past the grace: that build finds nothing to do
        assert embedder.texts_embedded == 0
        assert b.node.indexes.manifest("notes").signer_device_id == nodes["a"].device_id
        assert not [entry for entry in _decisions(b) if entry[0] != "sync"]
    finally:
        stop_sync_node(b)


def _unsign(sender) -> None:
    path = sender.node.indexes.bundle_path("notes")
    with open_bundle(path) as bundle:
        copy_bundle(bundle, path.with_name("unsigned.leann"), drop_cache=True)
    path.with_name("unsigned.leann").replace(path)


def _push_only(receiver, sender) -> None:
    """``sender`` dials ``receiver`` and pushes; ``receiver`` (its scheduler stopped) never
    dials back, so never sees the sender's bundle."""
    _sync(sender, receiver)


def _add_unbuilt(receiver, sender) -> None:
    sender.node.upsert_documents("notes", [DocumentInput(id="late", text="added after the "
                                                         "build, never built on a")])
    _sync(receiver, sender)


def _refused(receiver, sender) -> None:
    _unsign(sender)
    assert _sync(receiver, sender).decision == "refuse"


UNCOVERED_CASES = {  # how B (policy auto) receives A's documents without a covering bundle
    "pushed by a peer B never dials (after the grace)": _push_only,
    "the offered bundle lacks a received document": _add_unbuilt,
    "the offered bundle is refused": _refused,
}


@pytest.mark.parametrize("receive", UNCOVERED_CASES.values(), ids=UNCOVERED_CASES.keys())
def test_policy_auto_builds_received_documents_no_covering_bundle_brought(
        tmp_path, cluster, monkeypatch, receive) -> None:
    nodes, _ = cluster
    a = nodes["a"]
    monkeypatch.setattr(sync_service, "BUNDLE_GRACE_S", 2 * BUILD_DEBOUNCE_S)
    embedder = HashingEmbedder()
    b = _start(tmp_path, "b-auto", embedder, "auto")
    try:
        pair(a, b)
        receive(b, a)
        manifest = wait_for(lambda: b.node.indexes.manifest("notes"), what="B's own build")
        assert manifest.signer_device_id == b.device_id
        wait_for(lambda: b.service.engine.bundles.indexed("notes"), what="every doc indexed")
        assert embedder.texts_embedded >= len(DOCS)
        assert _hits(b, "note 17")[0][0] == _hits(a, "note 17")[0][0]
    finally:
        stop_sync_node(b)
