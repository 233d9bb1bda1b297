"""The dialling side: ``join`` an inviter, ``add_peer`` by id and address, and run a session.

A session with one peer: ``Hello``, then for each collection both sides share, pull the
peer's changes after our cursor (apply each batch durably, then ``AckChanges``), and push ours
after the peer's cursor for us (unless the peer holds us read-only), then exchange bundles.
Changes refused for clock skew either way are reported in the collection's error, and the
session goes on with the next step (a refusal stands until a clock catches up, see
``SyncEngine.apply``). A dead peer costs at most ``CALL_TIMEOUT_S`` per call and is reported
in ``SessionReport.error``. Sessions that dial through ``OpenChannels`` end at once when it
is closed (a stopping node).

A peer may have several recorded addresses (its host name and LAN addresses from pairing, the
addresses discovery found): a session says hello at each in turn until one answers as the
pinned device, and puts that one first, so the next session dials it at once. Before, only
the first was ever dialled, and a host name the LAN does not resolve left a peer unreachable
although one of its addresses worked.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.serialization import Encoding
from meshdex.index.errors import InvalidArgument, MeshdexError
from meshdex.node.config import split_host_port
from meshdex.node.errors import ClockSkew
from meshdex.node.grpc_errors import error_from_rpc
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import wire
from meshdex.sync.addresses import reachable_addresses
from meshdex.sync.bundle_fetch import FetchBlocks
from meshdex.sync.bundle_receive import BundleOutcome, BundleReceiver
from meshdex.sync.bundle_shelf import BundleOffer
from meshdex.sync.device_id import DeviceId
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import (
    PeerExists,
    PeerNotTrusted,
    PeerUnreachable,
    ProtocolViolation,
    SyncError,
)
from meshdex.sync.identity import DeviceIdentity, certificate_from_pem, load_identity
from meshdex.sync.pairing import InviteToken, pairing_proof
from meshdex.sync.transport import fetch_certificate, pinned_channel, refuses_our_certificate
from meshdex.sync.trust import READ_ONLY, READ_WRITE, Peer, TrustStore, make_peer

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0
SESSION_TIMEOUT_S = 600.0  # a whole pull or push stream


def _der(pem: bytes | str) -> bytes:
    return certificate_from_pem(pem).public_bytes(Encoding.DER)


def rpc_error(error: grpc.RpcError, *, peer: str, op: str) -> MeshdexError:
    """A failed call as the meshdex error of its kind; transport failures are ``SyncError``."""
    code, details = error.code(), error.details() or ""
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
        # No connection, a failed TLS handshake or no answer in time: a session tries the
        # peer's next address.
        kind = (PeerUnreachable if code in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED) else SyncError)
        return kind(f"{op}: peer unreachable or failed ({code.name}): {details}",
                    peer=peer, op=op, hint="is `meshdex serve` running there?")
    mapped = error_from_rpc(error)  # the class the peer named (ClockSkew, ...), else the code's
    mapped.op = op
    return mapped


@contextmanager
def calls(peer: str, op: str) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise rpc_error(error, peer=peer, op=op) from None


def join(data_dir: Path, token_text: str, *, name: str | None = None,
         addresses: tuple[str, ...] = ()) -> Peer:
    """Redeem an invite: pin the inviter by the token's id, prove the secret, record it with
    the sync addresses it gave that reach it from here (``sync/addresses.py``)."""
    token = InviteToken.decode(token_text)
    identity = load_identity(data_dir)
    trust = TrustStore(data_dir)
    peer_text = str(token.device_id)
    if trust.find(token.device_id) is not None:
        raise PeerExists(f"already paired with {peer_text}", peer=peer_text)
    last_error: MeshdexError | None = None
    for address in token.pair_addresses:
        try:
            server_pem = fetch_certificate(address, token.device_id)
        except SyncError as error:
            last_error = error
            continue
        with pinned_channel(address, server_pem, identity=None) as channel:
            stub = sync_pb2_grpc.MeshdexSyncStub(channel)
            with calls(peer_text, "pair"):
                nonce = stub.PairChallenge(pb.PairChallengeRequest(invite_id=token.invite_id),
                                           timeout=CALL_TIMEOUT_S).nonce
                proof = pairing_proof(token.secret, inviter_cert_der=_der(server_pem),
                                      joiner_cert_der=_der(identity.cert_pem), nonce=nonce)
                request = wire.pair_request_to_wire(wire.PairProof(
                    invite_id=token.invite_id, nonce=nonce, proof=proof,
                    joiner_cert_pem=identity.cert_pem.decode(),
                    joiner_name=name or socket.gethostname(), joiner_addresses=addresses))
                grant = wire.pair_grant_from_wire(stub.Pair(request, timeout=CALL_TIMEOUT_S))
        # The inviter names itself and has recorded this device already: a name taken here
        # is made unique, as the inviter does with this device's (refusing would leave the
        # pairing half made, and host names repeat).
        name_here = trust.free_name(grant.inviter_name, token.device_id)
        reported = grant.inviter_addresses or token.sync_addresses
        peer = make_peer(cert_pem=server_pem.decode(), name=name_here,
                         addresses=reachable_addresses(
                             reported, seen_at=split_host_port(address)[0]),
                         collections=grant.collections, mode=READ_WRITE,
                         held_read_only=grant.joiner_read_only)
        return trust.add(peer)
    assert last_error is not None
    raise last_error


def add_peer(data_dir: Path, device_id: str, address: str, *, collections: tuple[str, ...],
             read_only: bool, name: str = "") -> Peer:
    """Pair by hand: fetch the certificate at ``address``, check it is ``device_id``, record."""
    expected = DeviceId.parse(device_id)
    identity = load_identity(data_dir)
    if expected == identity.device_id:
        raise InvalidArgument("a device cannot pair with itself: that is this device's id",
                              hint="give the id `meshdex id` prints on the other device")
    pem = fetch_certificate(address, expected, identity=identity)
    peer = make_peer(cert_pem=pem.decode(), name=name or expected.short, addresses=[address],
                     collections=collections, mode=READ_ONLY if read_only else READ_WRITE)
    return TrustStore(data_dir).add(peer)


@dataclass(frozen=True, kw_only=True)
class IndexOutcome:
    """What a one-shot `meshdex sync` did for a collection's index after its sessions (a
    serving node builds in the background, and reports none): ``action`` is a build's
    ("built", "delta", "unchanged"), "not_built", or "failed" with ``error_kind`` the class
    of the error that stopped it (as ``bundle verify --json`` names one), with the reason."""

    action: str
    reason: str
    generation: int | None = None
    passages: int = 0
    seconds: float = 0.0
    error_kind: str | None = None


@dataclass(kw_only=True)
class CollectionReport:
    collection: str
    received: int = 0
    sent: int = 0
    conflicts: int = 0
    error: str | None = None
    bundle_bytes_fetched: int = 0
    bundle_bytes_total: int = 0
    blocks_fetched: int = 0
    blocks_reused: int = 0
    decision: str | None = None  # what became of the peer's bundle (None: it offered none)
    reason: str | None = None
    index: IndexOutcome | None = None


@dataclass(kw_only=True)
class SessionReport:
    peer: str
    name: str
    collections: list[CollectionReport] = field(default_factory=list)
    error: str | None = None
    # Shared with the peer here but not shared back by it: nothing moves for these until it
    # shares them too (`meshdex peer share` there).
    not_shared_back: list[str] = field(default_factory=list)
    # The peer holds this device read-only: nothing made here is sent to it.
    held_read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


STOPPED_MESSAGE = "this node is stopping: the session was ended"


class OpenChannels:
    """The channels of the sessions in flight, so that a stopping node can end them at once.

    A session with a peer that stopped answering (a laptop suspended mid-stream, a cable
    pulled) waits out its deadline: ``CALL_TIMEOUT_S`` for a call, ``SESSION_TIMEOUT_S`` for a
    stream. Closing a channel ends its calls (CANCELLED) at once; a stream is cut between
    batches, each applied durably, so the next session resumes from the cursor.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[grpc.Channel] = set()
        self.closed = False

    @contextmanager
    def dial(self, peer: Peer, identity: DeviceIdentity,
             address: str | None = None) -> Iterator[grpc.Channel]:
        """A pinned channel to ``address`` (default: ``peer``'s first), closed on exit or by
        ``close``."""
        with pinned_channel(address or peer.addresses[0], peer.cert_pem,
                            identity=identity) as channel:
            with self._lock:
                if self.closed:
                    raise SyncError(STOPPED_MESSAGE, peer=peer.device_id)
                self._open.add(channel)
            try:
                yield channel
            finally:
                with self._lock:
                    self._open.discard(channel)

    def close(self) -> None:
        """End every session in flight, and refuse new ones."""
        with self._lock:
            self.closed = True
            channels, self._open = list(self._open), set()
        for channel in channels:
            channel.close()


class Session:
    """One sync session with one peer (both directions, every shared collection)."""

    def __init__(self, engine: SyncEngine, identity: DeviceIdentity, peer: Peer, *,
                 trust: TrustStore, channels: OpenChannels | None = None) -> None:
        self.engine, self.identity, self.peer, self.trust = engine, identity, peer, trust
        self.channels = channels or OpenChannels()

    def run(self) -> SessionReport:
        report = SessionReport(peer=self.peer.device_id, name=self.peer.name)
        if not self.peer.addresses:
            report.error = "no address known for this peer; it dials this device"
            return report
        try:
            self._at_an_address(report)
        except MeshdexError as error:
            report.error = str(error)
        failed = [c for c in report.collections if c.error]
        if self.channels.closed and (report.error or failed):  # not the peer's failure
            report.error = STOPPED_MESSAGE
            for collection in failed:
                collection.error = STOPPED_MESSAGE
        return report

    def _at_an_address(self, report: SessionReport) -> None:
        """The session at the first of the peer's addresses where hello is answered;
        ``PeerUnreachable`` naming each address when none answers."""
        unreachable: list[tuple[str, PeerUnreachable]] = []
        for address in self.peer.addresses:
            with self.channels.dial(self.peer, self.identity, address) as channel:
                stub = sync_pb2_grpc.MeshdexSyncStub(channel)
                try:
                    theirs = self._hello(stub)
                except PeerUnreachable as error:
                    if self.channels.closed:
                        raise
                    if refuses_our_certificate(address, DeviceId.parse(self.peer.device_id),
                                               self.identity):
                        raise self._not_trusted_by_peer(address) from None
                    unreachable.append((address, error))
                    continue
                if unreachable:
                    logger.info("reached %s at %s (no answer at %s): dialling it there first",
                                self.peer.name, address,
                                ", ".join(tried for tried, _ in unreachable))
                    self.trust.set_address(self.peer.device_id, address)
                self._run(stub, theirs, report)
                return
        if len(unreachable) == 1:
            raise unreachable[0][1]
        raise PeerUnreachable(
            "hello: no answer at any of the peer's addresses: " + "; ".join(
                f"{address}: {error.message}" for address, error in unreachable),
            peer=self.peer.device_id, op="hello", hint=unreachable[-1][1].hint)

    def _not_trusted_by_peer(self, address: str) -> PeerNotTrusted:
        name = self.peer.name
        return PeerNotTrusted(
            f"hello: {name} answers at {address} but refuses this device's certificate: it "
            "has not paired with this device, or has removed it (`meshdex peer rm` there)",
            peer=self.peer.device_id, op="hello",
            hint=f"to pair again, `meshdex peer rm {name}` here, then `meshdex invite` on "
                 f"{name} and `meshdex join TOKEN` here")

    def _hello(self, stub: sync_pb2_grpc.MeshdexSyncStub) -> wire.Hello:
        # What this device holds of the peer's log is read after hello names its store.
        own = wire.Hello(protocol_version=wire.PROTOCOL_VERSION,
                         store_id=self.engine.store.device_id, collections=[])
        with calls(self.peer.device_id, "hello"):
            return wire.hello_response_from_wire(
                stub.Hello(wire.hello_request_to_wire(own), timeout=CALL_TIMEOUT_S))

    def _run(self, stub: sync_pb2_grpc.MeshdexSyncStub, theirs: wire.Hello,
             report: SessionReport) -> None:
        engine, peer = self.engine, self.peer
        if theirs.device_id != peer.device_id:
            raise SyncError("peer answered hello with another device id", peer=peer.device_id)
        engine.refuse_forgotten(peer, theirs.store_id, caller=False)
        # Before any cursor for that store is written: `peer forget` tells a paired device's
        # store from a gone one's by the store id its trust record names.
        self.trust.note(peer.device_id, store_id=theirs.store_id,
                        held_read_only=theirs.caller_read_only)
        report.held_read_only = theirs.caller_read_only
        offered = {c.config.name: c for c in theirs.collections}
        report.not_shared_back = sorted(set(peer.collections) - set(theirs.shared_names))
        if report.not_shared_back:
            logger.info("%s does not share %s back: nothing moves for them until it does",
                        peer.name, ", ".join(report.not_shared_back))
        for name in sorted(set(peer.collections) & set(theirs.shared_names)):
            result = CollectionReport(collection=name)
            report.collections.append(result)
            try:
                self._collection(stub, name, offered.get(name), theirs, result)
            except MeshdexError as error:
                result.error = str(error)

    def _collection(self, stub, name: str, shared: wire.SharedCollection | None,
                    theirs: wire.Hello, result: CollectionReport) -> None:
        """Pull, push, then the bundle exchange of ``name``. Changes refused for clock skew
        (here, or by the peer) are reported in ``result.error`` and the rest goes on: such a
        refusal stands until a clock catches up, and nothing else need wait for it."""
        engine, peer = self.engine, self.peer
        if not peer.read_only and shared is not None:
            with _clock_skew_noted(result):
                self._pull(stub, shared, theirs.store_id, result)
        if not theirs.caller_read_only and engine.store.has_collection(name):
            with _clock_skew_noted(result, prefix=f"refused by {peer.name}: "):
                self._push(stub, name, shared.cursor if shared else 0, theirs.store_id,
                           shared.watermarks if shared else {}, result)
        # A read-only peer's changes are refused here, and so is an index of them.
        if (engine.bundles is not None and not peer.read_only
                and engine.store.has_collection(name)):
            self._bundle(stub, name, result)

    def _pull(self, stub, shared: wire.SharedCollection, their_store_id: str,
              result: CollectionReport) -> None:
        engine, peer, name = self.engine, self.peer, shared.config.name
        engine.ensure_collection(shared.config, name)
        request = pb.PullRequest(collection=name,
                                 after_seq=engine.store.applied_cursor(their_store_id, name),
                                 watermarks=engine.store.state(name).watermarks,
                                 caller_store_id=engine.store.device_id)
        last = None
        with calls(peer.device_id, "pull"):
            for message in stub.PullChanges(request, timeout=SESSION_TIMEOUT_S):
                batch = wire.batch_from_wire(message)
                if (batch.collection, batch.sender_store_id) != (name, their_store_id):
                    raise SyncError("peer sent changes of another collection or store",
                                    peer=peer.device_id)
                outcome = engine.apply(batch)
                result.received += outcome.applied
                result.conflicts += outcome.conflicts
                last = batch.last_seq
            if last is not None:
                stub.AckChanges(pb.AckRequest(collection=name, seq=last,
                                              caller_store_id=engine.store.device_id),
                                timeout=CALL_TIMEOUT_S)

    def _bundle(self, stub, name: str, result: CollectionReport) -> None:
        """After documents: the peer's bundle of ``name``, decided on and maybe fetched."""
        assert self.engine.bundles is not None
        outcome = receive_bundle(stub, self.peer, name, self.engine.bundles)
        self.engine.bundles.settle(name)
        if outcome is None:
            return
        result.decision, result.reason = outcome.decision, outcome.reason
        result.bundle_bytes_fetched = outcome.bundle_bytes_fetched
        result.bundle_bytes_total = outcome.bundle_bytes_total
        result.blocks_fetched = outcome.blocks_fetched
        result.blocks_reused = outcome.blocks_reused

    def _push(self, stub, name: str, cursor: int, their_store_id: str,
              watermarks: dict[str, int], result: CollectionReport) -> None:
        engine, peer = self.engine, self.peer
        batches = engine.outgoing(name, after_seq=cursor, receiver_store_id=their_store_id,
                                  receiver_watermarks=watermarks, with_config=True)
        with calls(peer.device_id, "push"):
            response = stub.PushChanges((wire.batch_to_wire(b) for b in batches),
                                        timeout=SESSION_TIMEOUT_S)
        engine.acknowledge(their_store_id, name, response.cursor)
        result.sent += response.applied
        result.conflicts += response.conflicts


@contextmanager
def _clock_skew_noted(result: CollectionReport, *, prefix: str = "") -> Iterator[None]:
    """``ClockSkew`` raised inside becomes ``result.error`` (after any already there)."""
    try:
        yield
    except ClockSkew as error:
        result.error = "; ".join(filter(None, (result.error, f"{prefix}{error}")))


def receive_bundle(stub: sync_pb2_grpc.MeshdexSyncStub, peer: Peer, name: str,
                   receiver: BundleReceiver) -> BundleOutcome | None:
    """The peer's current bundle of ``name``, handed to ``receiver`` to decide on and maybe
    fetch in runs of blocks; None if the peer has none."""
    offer, whole = request_offer(stub, peer.device_id, name,
                                 whole_up_to=receiver.whole_bundle_max_bytes(name))
    if offer is None:
        return None
    fetch = block_fetcher(stub, peer.device_id, name, offer.manifest.bundle_id)
    return receiver.receive(peer.name or peer.device_id, offer, fetch, whole)


def request_offer(stub: sync_pb2_grpc.MeshdexSyncStub, peer: str, name: str, *,
                  whole_up_to: int) -> tuple[BundleOffer | None, bytes | None]:
    """``peer``'s offer of its bundle of ``name`` (None: it has none) and, when the bundle is
    at most ``whole_up_to`` bytes, the whole file if the peer sent it (one predating the
    field does not); the file's checks are ``fetch_bundle``'s."""
    with calls(peer, "bundle offer"):
        message = stub.GetBundleOffer(pb.BundleOfferRequest(
            collection=name, whole_bundle_max_bytes=whole_up_to), timeout=CALL_TIMEOUT_S)
    offer = wire.offer_from_wire(message)
    if offer is None:
        return None, None
    if offer.manifest.collection != name:
        raise SyncError("peer offered a bundle of another collection", peer=peer)
    whole = message.whole_bundle  # read once: each read of a bytes field copies it
    if len(whole) > whole_up_to:
        raise ProtocolViolation(f"peer sent a bundle of {len(whole)} bytes with its offer; at "
                                f"most {whole_up_to} were asked for", peer=peer)
    return offer, whole or None


def block_fetcher(stub: sync_pb2_grpc.MeshdexSyncStub, peer: str, collection: str,
                  bundle_id: str) -> FetchBlocks:
    """``FetchBlocks`` calls to ``peer`` for blocks of bundle ``bundle_id``: each request is
    sent when asked for, its runs arrive as the answer is iterated."""
    def fetch(indexes: Sequence[int]) -> _CallRuns:
        request = pb.FetchBlocksRequest(collection=collection, bundle_id=bundle_id,
                                        blocks=list(indexes))
        with calls(peer, "fetch blocks"):
            return _CallRuns(stub.FetchBlocks(request, timeout=SESSION_TIMEOUT_S), peer)
    return fetch


@dataclass(frozen=True)
class _CallRuns:
    """The runs of a ``FetchBlocks`` call already sent (``bundle_fetch.BlockRuns``)."""

    responses: Any  # the call's response iterator (a grpc.Call)
    peer: str

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with calls(self.peer, "fetch blocks"):
            for run in self.responses:
                yield run.first_block, run.data

    def close(self) -> None:
        self.responses.cancel()  # nothing once the call has ended


def run_session(engine: SyncEngine, identity: DeviceIdentity, trust: TrustStore,
                peer: Peer, *, channels: OpenChannels | None = None) -> SessionReport:
    """Sync once with ``peer`` and note the outcome in the trust store (``channels``: what a
    stopping node closes to end the session)."""
    session = Session(engine, identity, peer, trust=trust, channels=channels)
    report = session.run()
    if report.error == STOPPED_MESSAGE:
        return report  # says nothing about the peer: its last outcome stays as it was
    errors = [report.error] + [f"{c.collection}: {c.error}" for c in report.collections
                               if c.error]
    first_error = next((e for e in errors if e), None)
    # a session that reached the peer noted the contact at its hello
    trust.note(peer.device_id, error=first_error, synced=first_error is None, contacted=False)
    return report
