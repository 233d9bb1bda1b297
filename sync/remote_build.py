"""``meshdex build --on PEER``: a stronger paired device builds the index, this one fetches it.

The asking side (``build_on_peer``): sync the collection's documents with the peer both ways
(so it holds ours and we hold what its bundle will cover), ask it to build over
``BuildForPeer`` while relaying its progress, then fetch and install the resulting bundle
through the ordinary bundle path (signature checked against the peer's paired certificate,
blocks verified, no rollback). That pre-build session and the install run with no build
hook and ``index_policy`` ``fetch`` whatever the configuration says: the point is that this
device embeds nothing for it (only a write that lands between the sync and the install is
applied as a local delta, as any install does).

The serving side (``serve_build``): only a read-write peer that shares the collection may
ask (``check_shared(writing=True)``: ``ReadOnlyPeer`` / ``CollectionNotShared``, both
PERMISSION_DENIED), and a collection whose embedder sends text to a network service is
built for a peer only if ``sync_allow_network_embedders`` is on, exactly as after a sync.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from meshdex.index.compat import DecisionKind
from meshdex.index.errors import FailedPrecondition
from meshdex.index.params import BuildParams
from meshdex.node import wire as node_wire
from meshdex.node.indexing import BuildProgress, BuildReport
from meshdex.node.records import CollectionInfo
from meshdex.proto.meshdex.v1 import node_pb2, sync_pb2_grpc
from meshdex.sync.bundle_receive import BundleReceiver
from meshdex.sync.client import CollectionReport, calls, receive_bundle, run_session
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import (
    BundleRefused,
    CollectionNotShared,
    ReadOnlyPeer,
    SyncError,
)
from meshdex.sync.transport import pinned_channel
from meshdex.sync.trust import Peer, TrustStore

logger = logging.getLogger(__name__)

REMOTE_BUILD_TIMEOUT_S = 3600.0  # the whole build stream: a large collection takes a while
FETCH_POLICY = "fetch"
INSTALLED = frozenset({DecisionKind.USE.value, DecisionKind.USE_DROP_CACHE.value,
                       DecisionKind.APPLY_LOCAL_DELTA.value})
UNCHANGED = "unchanged"  # installed already (a sync got it first), or the index here is current


@dataclass(frozen=True, kw_only=True)
class RemoteBuildReport:
    """What ``build --on`` did: the documents synced first, the peer's build, the fetch."""

    peer: str              # the builder's device id
    peer_name: str
    collection: str
    sent: int              # documents pushed to the peer before it built
    received: int          # documents pulled from it
    action: str            # the peer's build: "built", "delta" or "unchanged"
    build_reason: str
    generation: int
    passages: int
    build_seconds: float
    decision: str          # what this device did with the bundle ("use", "unchanged", ...)
    reason: str
    bundle_bytes_fetched: int
    bundle_bytes_total: int
    blocks_fetched: int
    blocks_reused: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteBuildReport:
        return cls(**data)


def network_embedder_refusal(info: CollectionInfo, *, allow_network: bool) -> str | None:
    """Why this device must not embed ``info`` unattended (for a sync or a peer): its
    embedder sends the text to a network service and the user has not opted in. None: ok."""
    if info.embedder.kind == "local" or allow_network:
        return None
    return (f"the embedder of {info.name!r} sends text to {info.embedder.url}; build it by "
            f"hand or set sync_allow_network_embedders")


def serve_build(engine: SyncEngine, peer: Peer, call: node_wire.BuildCall, *,
                allow_network: bool, progress: BuildProgress) -> BuildReport:
    """Build ``call.collection`` here because ``peer`` asked; refusals raise before any work."""
    engine.check_shared(peer, call.collection, writing=True)
    info = engine.node.get_collection(call.collection)
    refusal = network_embedder_refusal(info, allow_network=allow_network)
    if refusal is not None:
        raise FailedPrecondition(f"not building for a peer: {refusal}")
    logger.info("building %r for peer %s", call.collection, peer.name or peer.device_id)
    return engine.node.build(call.collection, params=call.params, rebuild=call.rebuild,
                             progress=progress)


def _sync_documents(engine: SyncEngine, trust: TrustStore, peer: Peer,
                    collection: str) -> CollectionReport:
    """One session with ``peer`` that moves documents only: no bundle, no build hook."""
    documents_only = SyncEngine(node=engine.node, identity=engine.identity)
    session = run_session(documents_only, engine.identity, trust, peer)
    synced = next((c for c in session.collections if c.collection == collection), None)
    if session.error is None and synced is None:
        if collection in session.not_shared_back:
            raise CollectionNotShared(
                f"{peer.name} does not share {collection!r} with this device",
                peer=peer.device_id, op="build on peer",
                hint=f"on {peer.name}, run `meshdex peer share {engine.identity.device_id} "
                     f"{collection}`")
        raise CollectionNotShared(
            f"{collection!r} is not shared with {peer.name} here", peer=peer.device_id,
            op="build on peer", hint=f"`meshdex peer share {peer.device_id} {collection}`, "
                                     "and the same on the peer for this device")
    failure = session.error or (synced.error if synced else None)
    if failure or synced is None:
        raise SyncError(f"syncing {collection!r} with {peer.name} before its build failed: "
                        f"{failure}", peer=peer.device_id, op="build on peer")
    return synced


def _build_there(stub: sync_pb2_grpc.MeshdexSyncStub, peer: Peer, collection: str,
                 params: BuildParams | None, rebuild: bool,
                 progress: Callable[[str, int, int], None] | None) -> BuildReport:
    """The peer's build of ``collection``, its progress relayed to ``progress``."""
    request = node_pb2.BuildRequest(collection=collection, rebuild=rebuild,
                                    params_json=node_wire.to_json(params.to_dict())
                                    if params else "")
    with calls(peer.device_id, "build on peer"):
        for update in stub.BuildForPeer(request, timeout=REMOTE_BUILD_TIMEOUT_S):
            if update.done:
                return node_wire.build_report_from_wire(update.summary_json)
            if progress is not None:
                progress(update.stage, update.done_items, update.total_items)
    raise SyncError("the peer's build stream ended without a result", peer=peer.device_id,
                    hint="it may have shut down; try again")


def build_on_peer(*, engine: SyncEngine, trust: TrustStore, peer_ref: str, collection: str,
                  params: BuildParams | None = None, rebuild: bool = False,
                  progress: Callable[[str, int, int], None] | None = None) -> RemoteBuildReport:
    """Have the peer ``peer_ref`` (device id or name, ``TrustStore.resolve``) build
    ``collection`` and install its bundle here."""
    started = time.monotonic()
    peer = trust.resolve(peer_ref)
    engine.node.get_collection(collection)  # CollectionNotFound before any network call
    engine.check_shared(peer, collection, writing=False)
    if peer.read_only:
        raise ReadOnlyPeer(f"{peer.name or peer.device_id} is paired read-only here: this "
                           f"device takes neither its changes nor its bundles",
                           peer=peer.device_id, hint="build on a read-write peer")
    if not peer.addresses:
        raise SyncError("no address known for this peer", peer=peer.device_id,
                        hint="pair again, or let discovery find it on the LAN")
    synced = _sync_documents(engine, trust, peer, collection)
    peer = trust.get(peer.device_id)  # the session put the address that answered first
    with pinned_channel(peer.addresses[0], peer.cert_pem, identity=engine.identity) as channel:
        stub = sync_pb2_grpc.MeshdexSyncStub(channel)
        built = _build_there(stub, peer, collection, params, rebuild, progress)
        receiver = BundleReceiver(node=engine.node, identity=engine.identity, trust=trust,
                                  policy=FETCH_POLICY, request_build=None)
        outcome = receive_bundle(stub, peer, collection, receiver)
    if outcome is None:
        raise SyncError(f"{peer.name} built {collection!r} but offers no bundle of it",
                        peer=peer.device_id)
    if outcome.decision not in INSTALLED and outcome.decision != UNCHANGED:
        raise BundleRefused(f"the bundle {peer.name} built was not installed "
                            f"({outcome.decision}): {outcome.reason}", peer=peer.device_id,
                            op="build on peer")
    return RemoteBuildReport(
        peer=peer.device_id, peer_name=peer.name, collection=collection, sent=synced.sent,
        received=synced.received, action=built.action, build_reason=built.reason,
        generation=built.generation, passages=built.passages, build_seconds=built.seconds,
        decision=outcome.decision, reason=outcome.reason,
        bundle_bytes_fetched=outcome.bundle_bytes_fetched,
        bundle_bytes_total=outcome.bundle_bytes_total, blocks_fetched=outcome.blocks_fetched,
        blocks_reused=outcome.blocks_reused, seconds=time.monotonic() - started)
