"""``MeshdexSync`` over gRPC: the per-call trust check and the thin servicer.

``PeerAuthInterceptor`` runs before every handler. On the sync listener it hashes the
caller's certificate and refuses (PERMISSION_DENIED) any device not in the trust store *now*
— so a removed peer's next call fails even on an open connection — and refuses the pairing
RPCs. On the pairing listener it serves only ``PairChallenge`` and ``Pair``. The servicer
decodes (``sync/wire.py``), calls the engine or the pairing code, encodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from meshdex.node import wire as node_wire
from meshdex.node.grpc_errors import wrap_handler
from meshdex.node.servicer import stream_build
from meshdex.proto.meshdex.v1 import node_pb2, sync_pb2_grpc
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.sync import wire
from meshdex.sync.addresses import caller_host
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import PeerNotTrusted, ProtocolViolation
from meshdex.sync.pairing_server import PairingDesk
from meshdex.sync.remote_build import serve_build
from meshdex.sync.transport import caller_device_id
from meshdex.sync.trust import Peer, TrustStore

logger = logging.getLogger(__name__)

SYNC_SERVICE_NAME = "meshdex.v1.MeshdexSync"
PAIRING_METHODS = frozenset({"PairChallenge", "Pair"})
SYNC_ROLE, PAIRING_ROLE = "sync", "pairing"


def trusted_caller(context: grpc.ServicerContext, trust: TrustStore) -> Peer:
    """The paired peer whose certificate this call's connection presented."""
    device_id = caller_device_id(context)
    peer = trust.find(device_id) if device_id is not None else None
    if peer is None:
        raise PeerNotTrusted(
            "this device is not paired with the device you called",
            peer=str(device_id) if device_id else None,
            hint="pair first: `meshdex invite` there, then `meshdex join TOKEN` here")
    return peer


class PeerAuthInterceptor(grpc.ServerInterceptor):
    """Refuse calls the listener's role does not allow, and untrusted certificates."""

    def __init__(self, trust: TrustStore, role: str) -> None:
        self.trust, self.role = trust, role

    def _check(self, method: str, behaviour: Callable[..., Any], request: Any,
               context: grpc.ServicerContext) -> Any:
        if self.role == PAIRING_ROLE:
            if method not in PAIRING_METHODS:
                raise PeerNotTrusted(f"{method} is not served on the pairing port",
                                     hint="sync calls go to the sync port")
        else:
            if method in PAIRING_METHODS:
                raise PeerNotTrusted("pairing is served on the pairing port only")
            trusted_caller(context, self.trust)
        return behaviour(request, context)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        full_name = handler_call_details.method
        if handler is None or not full_name.startswith(f"/{SYNC_SERVICE_NAME}/"):
            return handler
        method = full_name.rsplit("/", 1)[-1]

        def around(behaviour: Callable[..., Any], request: Any,
                   context: grpc.ServicerContext) -> Any:
            return self._check(method, behaviour, request, context)

        return wrap_handler(handler, around)


class SyncServicer(sync_pb2_grpc.MeshdexSyncServicer):
    """Thin: decode, call the engine or the pairing desk, encode.

    A session a peer runs with this device is a sync for this device too: its push (for a
    peer paired read-only here, which pushes nothing, its pull) notes ``last_sync``, as the
    end of a session this device runs does; before, only sessions started here did, so a
    device that only ever was dialled showed "last sync never".
    """

    def __init__(self, *, engine: SyncEngine, trust: TrustStore, desk: PairingDesk,
                 on_hint: Callable[[str], None] | None = None,
                 allow_network_embedders: bool = False) -> None:
        self.engine, self.trust, self.desk, self.on_hint = engine, trust, desk, on_hint
        self.allow_network_embedders = allow_network_embedders

    def _peer(self, context: grpc.ServicerContext) -> Peer:
        peer = trusted_caller(context, self.trust)
        self.trust.note(peer.device_id)
        return peer

    def Hello(self, request: pb.HelloRequest, context: grpc.ServicerContext) -> pb.HelloResponse:
        peer = trusted_caller(context, self.trust)
        hello = wire.hello_request_from_wire(request)
        self.trust.note(peer.device_id, store_id=hello.store_id)
        if hello.protocol_version != wire.PROTOCOL_VERSION:
            raise ProtocolViolation(f"protocol version {hello.protocol_version} is not "
                                    f"{wire.PROTOCOL_VERSION}", peer=peer.device_id,
                                    hint="run the same meshdex version on both devices")
        return wire.hello_response_to_wire(self.engine.hello(peer, hello.store_id))

    def PairChallenge(self, request: pb.PairChallengeRequest,
                      context: grpc.ServicerContext) -> pb.PairChallengeResponse:
        nonce = self.desk.challenge(request.invite_id, host=caller_host(context.peer()))
        return pb.PairChallengeResponse(nonce=nonce)

    def Pair(self, request: pb.PairRequest, context: grpc.ServicerContext) -> pb.PairResponse:
        grant = self.desk.redeem(wire.pair_request_from_wire(request),
                                 host=caller_host(context.peer()))
        return wire.pair_grant_to_wire(grant)

    def PullChanges(self, request: pb.PullRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.ChangeBatch]:
        peer = self._peer(context)
        self.engine.check_shared(peer, request.collection, writing=False)
        if not self.engine.store.has_collection(request.collection):
            return
        batches = self.engine.outgoing(
            request.collection, after_seq=request.after_seq,
            receiver_store_id=request.caller_store_id,
            receiver_watermarks=dict(request.watermarks))
        for batch in batches:
            yield wire.batch_to_wire(batch)
        if peer.read_only:  # it pushes nothing after: its pull was the exchange
            self.trust.note(peer.device_id, synced=True)

    def AckChanges(self, request: pb.AckRequest,
                   context: grpc.ServicerContext) -> pb.AckResponse:
        peer = self._peer(context)
        self.engine.check_shared(peer, request.collection, writing=False)
        self.engine.acknowledge(wire.check_store_id(request.caller_store_id, "caller store id"),
                                request.collection, request.seq)
        return pb.AckResponse()

    def PushChanges(self, request_iterator: Iterator[pb.ChangeBatch],
                    context: grpc.ServicerContext) -> pb.PushResponse:
        peer = self._peer(context)
        applied = ignored = conflicts = 0
        first: wire.ChangeBatch | None = None
        for message in request_iterator:
            batch = wire.batch_from_wire(message)
            if first is None:
                first = batch
                self.engine.check_shared(peer, batch.collection, writing=True)
                self.engine.refuse_forgotten(peer, batch.sender_store_id, caller=True)
            elif (batch.collection, batch.sender_store_id) != (first.collection,
                                                               first.sender_store_id):
                raise ProtocolViolation("one push carries one collection of one store",
                                        peer=peer.device_id)
            outcome = self.engine.apply(batch)
            applied += outcome.applied
            ignored += outcome.ignored
            conflicts += outcome.conflicts
        cursor = 0
        if first is not None and self.engine.store.has_collection(first.collection):
            cursor = self.engine.store.applied_cursor(first.sender_store_id, first.collection)
        self.trust.note(peer.device_id, synced=True)  # its changes went in: a sync here too
        return pb.PushResponse(cursor=cursor, applied=applied, ignored=ignored,
                               conflicts=conflicts)

    def GetBundleOffer(self, request: pb.BundleOfferRequest,
                       context: grpc.ServicerContext) -> pb.BundleOffer:
        peer = self._peer(context)
        self.engine.check_shared(peer, request.collection, writing=False)
        if self.engine.shelf is None or not self.engine.store.has_collection(request.collection):
            return wire.offer_to_wire(None)
        if not request.whole_bundle_max_bytes:
            return wire.offer_to_wire(self.engine.shelf.offer(request.collection))
        found = self.engine.shelf.offer_with_whole(request.collection,
                                                   request.whole_bundle_max_bytes)
        return wire.offer_to_wire(*found) if found else wire.offer_to_wire(None)

    def FetchBlocks(self, request: pb.FetchBlocksRequest,
                    context: grpc.ServicerContext) -> Iterator[pb.BlockRun]:
        peer = self._peer(context)
        collection, bundle_id, indexes = wire.block_request_from_wire(request)
        self.engine.check_shared(peer, collection, writing=False)
        if self.engine.shelf is None:
            raise ProtocolViolation("this device serves no bundles", peer=peer.device_id)
        for first, data in self.engine.shelf.runs(collection, bundle_id, indexes):
            yield pb.BlockRun(first_block=first, data=data)

    def BuildForPeer(self, request: node_pb2.BuildRequest,
                     context: grpc.ServicerContext) -> Iterator[node_pb2.BuildProgress]:
        peer = self._peer(context)
        call = node_wire.build_request_from_wire(request)
        return stream_build(
            lambda progress: serve_build(self.engine, peer, call,
                                         allow_network=self.allow_network_embedders,
                                         progress=progress),
            context, name=f"peer-build-{call.collection}")

    def Changed(self, request: pb.ChangedRequest,
                context: grpc.ServicerContext) -> pb.ChangedResponse:
        peer = self._peer(context)
        if self.on_hint is not None:
            self.on_hint(peer.device_id)
        return pb.ChangedResponse()
