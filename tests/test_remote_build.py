"""``build --on PEER``: a paired desktop builds over real mutual TLS, the laptop only fetches.

In-process sync nodes (real LMDB, real gRPC, real TLS) with counting embedders: the laptop
ends with the desktop's signed bundle, searchable, and embedded no passage; refusals (a
read-only pairing either way, an unshared collection, an unknown peer, a network embedder)
come back as the error a user would see, and leave the laptop's index as it was. The same
flow through real ``meshdex serve`` processes and the real model is in
tests/test_remote_build_cli.py.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition, NotFound, PermissionDenied
from meshdex.node.records import DocumentInput
from meshdex.proto.meshdex.v1 import node_pb2, sync_pb2, sync_pb2_grpc
from meshdex.sync.admin import LocalSyncAdmin
from meshdex.sync.bundle_shelf import BundleShelf
from meshdex.sync.errors import CollectionNotShared, PeerNotFound, ReadOnlyPeer
from meshdex.sync.identity import load_identity
from meshdex.sync.transport import pinned_channel
from meshdex.sync.trust import READ_ONLY

from tests.fakes import HashingEmbedder
from tests.sync_support import UNBUILT, pair, start_sync_node, stop_sync_node

LOCAL = EmbedderSpec()
LAPTOP_DOCS = {f"l{i:03d}": f"laptop note {i} about topic {i % 7} " + "words " * 30
               for i in range(60)}
DESKTOP_DOCS = {f"d{i:03d}": f"desktop note {i} about colour {i % 5} " + "words " * 30
                for i in range(40)}
TEST_BLOCK_BYTES = 4096  # small blocks, so a small test bundle has many


def _start(tmp_path, name, embedder):
    node = start_sync_node(tmp_path, name, embedder=embedder, sync_interval_s=3600)
    node.service.scheduler.stop()  # sessions run when a test says so
    node.service.engine.shelf = BundleShelf(node.node, block_size_bytes=TEST_BLOCK_BYTES)
    return node


@pytest.fixture
def devices(tmp_path):
    """A laptop holding notes (never built) paired read-write with a desktop holding others."""
    embedders = {"laptop": HashingEmbedder(), "desktop": HashingEmbedder()}
    nodes = {name: _start(tmp_path, name, embedder) for name, embedder in embedders.items()}
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    for node, docs in ((laptop, LAPTOP_DOCS), (desktop, DESKTOP_DOCS)):
        node.node.create_collection("notes", embedder=LOCAL)
        node.node.upsert_documents("notes", [DocumentInput(id=k, text=v)
                                             for k, v in docs.items()])
    pair(desktop, laptop)
    yield nodes, embedders
    for node in nodes.values():
        stop_sync_node(node)


def _admin(node):
    return LocalSyncAdmin(node.service.config, service=node.service)


def test_laptop_ends_with_the_desktops_index_and_embeds_nothing(devices):
    nodes, embedders = devices
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    stages = []
    report = _admin(laptop).build_on(desktop.device_id, "notes", params=None, rebuild=False,
                                     progress=lambda stage, done, total: stages.append(stage))
    assert embedders["laptop"].model_calls == 0
    assert embedders["desktop"].model_calls > 0
    assert "embedding" in stages  # the desktop's progress, relayed
    assert (report.sent, report.received) == (len(LAPTOP_DOCS), len(DESKTOP_DOCS))
    assert report.action == "built" and report.decision == "use"
    assert report.bundle_bytes_fetched == report.bundle_bytes_total > 0
    installed = laptop.node.indexes.manifest("notes")
    assert installed.signer_device_id == desktop.device_id
    assert installed.bundle_id == desktop.node.indexes.manifest("notes").bundle_id
    assert laptop.node.status().indexes[0].stale is False
    for query in ("laptop note 12 topic 5", "desktop note 3 colour 3"):
        assert ([h.document_id for h in laptop.node.search("notes", query, top_k=3).hits]
                == [h.document_id for h in desktop.node.search("notes", query, top_k=3).hits])


def test_build_on_a_peer_whose_first_address_is_dead_builds_at_the_one_that_answers(devices):
    """The sync before the build finds the address that answers; the build then dialled the
    dead first one again and failed."""
    nodes, _ = devices
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    trust = laptop.service.trust
    peer = trust.get(desktop.device_id)
    trust.add(replace(peer, addresses=("127.0.0.1:9", *peer.addresses)), replace_existing=True)
    report = _admin(laptop).build_on(desktop.device_id, "notes", params=None, rebuild=False,
                                     progress=None)
    assert report.action == "built" and report.decision == "use"
    assert trust.get(desktop.device_id).addresses[0] == desktop.sync_address


def test_a_second_build_on_fetches_only_changed_blocks(devices):
    nodes, embedders = devices
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    admin = _admin(laptop)
    admin.build_on(desktop.device_id, "notes", params=None, rebuild=False, progress=None)
    laptop.node.upsert_documents("notes", [DocumentInput(id="l999", text="a new laptop note")])
    report = admin.build_on(laptop.service.trust.get(desktop.device_id).name, "notes",
                            params=None, rebuild=False, progress=None)
    assert (report.sent, report.action) == (1, "delta")
    assert report.blocks_reused > 0 and report.bundle_bytes_fetched < report.bundle_bytes_total
    assert embedders["laptop"].model_calls == 0
    hits = laptop.node.search("notes", "a new laptop note", top_k=1).hits
    assert [h.document_id for h in hits] == ["l999"]


def _set_peer(node, other, **changes):
    trust = node.service.trust
    peer = trust.get(other.device_id)
    trust.add(replace(peer, **changes), replace_existing=True)


def _read_only_on_desktop(nodes):
    _set_peer(nodes["desktop"], nodes["laptop"], mode=READ_ONLY)


def _read_only_on_laptop(nodes):
    _set_peer(nodes["laptop"], nodes["desktop"], mode=READ_ONLY)


def _private_on_both(nodes):
    for node in nodes.values():
        node.node.create_collection("private", embedder=LOCAL)
        node.node.upsert_documents("private", [DocumentInput(id="p", text="secret")])


def _laptop_believes_private_shared(nodes):
    _private_on_both(nodes)
    _set_peer(nodes["laptop"], nodes["desktop"], collections=("notes", "private"))


def _network_embedder(nodes):
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    for node, other in ((laptop, desktop), (desktop, laptop)):  # unshared, a drop is allowed
        shared = node.service.trust.get(other.device_id).collections
        _set_peer(node, other, collections=())
        node.node.drop_collection("notes")
        _set_peer(node, other, collections=shared)
    nodes["laptop"].add("notes", LAPTOP_DOCS)  # UNBUILT: an http embedder, pushed as is
    assert nodes["laptop"].node.get_collection("notes").embedder == UNBUILT


REFUSALS = [
    # (id, setup, collection, peer, error class, words in the message)
    ("desktop-holds-laptop-read-only", _read_only_on_desktop, "notes", None, PermissionDenied,
     "read-only"),
    ("laptop-holds-desktop-read-only", _read_only_on_laptop, "notes", None, ReadOnlyPeer,
     "read-only here"),
    ("unshared-here", _private_on_both, "private", None, CollectionNotShared,
     "is not shared with"),
    ("unshared-there", _laptop_believes_private_shared, "private", None, CollectionNotShared,
     "run `meshdex peer share"),
    ("unknown-peer", None, "notes", "nobody", PeerNotFound, "nobody"),
    ("unknown-collection", None, "absent", None, NotFound, "absent"),
    ("network-embedder", _network_embedder, "notes", None, FailedPrecondition,
     "sync_allow_network_embedders"),
]


@pytest.mark.parametrize(("setup", "collection", "peer", "error", "words"),
                         [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS])
def test_refusals_build_and_install_nothing(devices, setup, collection, peer, error, words):
    nodes, embedders = devices
    if setup is not None:
        setup(nodes)
    with pytest.raises(error) as raised:
        _admin(nodes["laptop"]).build_on(peer or nodes["desktop"].device_id, collection,
                                         params=None, rebuild=False, progress=None)
    assert words in str(raised.value)
    assert embedders["laptop"].model_calls == embedders["desktop"].model_calls == 0
    for node in nodes.values():
        assert node.node.indexes.manifest("notes") is None


def _build_call(caller_identity, desktop, collection):
    request = node_pb2.BuildRequest(collection=collection)
    with pinned_channel(desktop.sync_address, desktop.service.identity.cert_pem,
                        identity=caller_identity) as channel:
        stub = sync_pb2_grpc.MeshdexSyncStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.BuildForPeer(request, timeout=30))
    return raised.value


SERVER_REFUSALS = [
    # (id, setup, caller, collection, status, words); an unpaired certificate does not get
    # past the TLS handshake, so no handler runs for it
    ("unpaired-certificate", None, "stranger", "notes", grpc.StatusCode.UNAVAILABLE, ""),
    ("read-only-caller", _read_only_on_desktop, "laptop", "notes",
     grpc.StatusCode.PERMISSION_DENIED, "read-only"),
    ("unshared-collection", _private_on_both, "laptop", "private",
     grpc.StatusCode.PERMISSION_DENIED, "not shared"),
]


@pytest.mark.parametrize(("setup", "caller", "collection", "status", "words"),
                         [case[1:] for case in SERVER_REFUSALS],
                         ids=[case[0] for case in SERVER_REFUSALS])
def test_desktop_refuses_build_for_peer_on_the_call_itself(devices, tmp_path, setup, caller,
                                                           collection, status, words):
    """The desktop checks the caller's certificate and pairing on BuildForPeer itself,
    whatever the asking client checked first."""
    nodes, embedders = devices
    if setup is not None:
        setup(nodes)
    identity = (load_identity(tmp_path / "stranger") if caller == "stranger"
                else nodes[caller].service.identity)
    error = _build_call(identity, nodes["desktop"], collection)
    assert error.code() == status
    assert words in error.details()
    assert embedders["desktop"].model_calls == 0
    assert nodes["desktop"].node.indexes.manifest(collection) is None


def test_a_peer_removed_mid_connection_is_refused_on_its_next_build_call(devices):
    nodes, embedders = devices
    laptop, desktop = nodes["laptop"], nodes["desktop"]
    request = node_pb2.BuildRequest(collection="notes")
    with pinned_channel(desktop.sync_address, desktop.service.identity.cert_pem,
                        identity=laptop.service.identity) as channel:
        stub = sync_pb2_grpc.MeshdexSyncStub(channel)
        stub.GetBundleOffer(sync_pb2.BundleOfferRequest(collection="notes"), timeout=30)
        desktop.service.trust.remove(laptop.device_id)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.BuildForPeer(request, timeout=30))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert embedders["desktop"].model_calls == 0
