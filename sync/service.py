"""Sync inside ``meshdex serve``: the two listeners, continuous sync, and background builds.

``SyncService`` is started beside the node's own gRPC server and stopped before the store
closes. Continuous sync (``SyncScheduler``): a local write (the store's ``last_seq`` moving)
makes every peer due now; a ``Changed`` hint makes its sender due; every peer is also due
every ``sync_interval_s``. Sessions run on a small pool, one at a time per peer, so a dead or
slow peer delays nobody else, and never a local write or search; failures back off
exponentially (``BACKOFF_BASE_S`` doubling up to ``BACKOFF_MAX_S``) with full jitter, and are
logged as warnings when they start, when their error changes and when they end.

After changes are applied the index is brought up to date by ``DebouncedBuilder``: a delta
build per collection at most ``BUILD_DEBOUNCE_S`` after the first change it has not built yet
(changes arriving meanwhile join that build; later requests never postpone it). With
``index_policy`` ``auto`` received documents wait for the bundle exchange instead: a peer's
covering bundle is usually offered moments later in the same session (or the one this device
dials back at once), and installing it costs no embedding. The session settles the collection
after the exchange (``BundleReceiver.settle``: built now unless a covering bundle was
installed), and every arrival also schedules a build ``BUNDLE_GRACE_S`` later, so documents
from a peer that never offers a covering bundle (no address to dial back, a failed transfer)
are still built. A due build is skipped when the installed index already holds every document,
and put off while a bundle of the collection is being fetched. With ``fetch`` received
documents are indexed by the peer's bundle only (``sync/bundle_receive.py``).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from meshdex.node.config import NodeConfig, split_host_port
from meshdex.node.grpc_errors import ErrorMappingInterceptor
from meshdex.node.listen import bind_port
from meshdex.node.service import Node
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync.bundle_receive import BundleReceiver
from meshdex.sync.bundle_shelf import BundleShelf
from meshdex.sync.client import (
    STOPPED_MESSAGE,
    OpenChannels,
    SessionReport,
    run_session,
)
from meshdex.sync.discovery import (
    WILDCARD_HOSTS,
    Announcement,
    Discovery,
    discovery_active,
    lan_addresses,
)
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import SyncError
from meshdex.sync.identity import DeviceIdentity, load_identity
from meshdex.sync.pairing import InviteBook
from meshdex.sync.pairing_server import PairingDesk
from meshdex.sync.remote_build import network_embedder_refusal
from meshdex.sync.servicer import PAIRING_ROLE, SYNC_ROLE, PeerAuthInterceptor, SyncServicer
from meshdex.sync.transport import (
    MAX_SYNC_MESSAGE_BYTES,
    check_tls_1_3_only,
    pairing_server_credentials,
    sync_server_credentials,
)
from meshdex.sync.trust import MAX_ADDRESSES, TrustStore

logger = logging.getLogger(__name__)

SYNC_RPC_THREADS = 8
SESSION_THREADS = 4
POLL_INTERVAL_S = 0.25
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
BUILD_DEBOUNCE_S = 1.0
BUNDLE_GRACE_S = 10.0  # how long received documents wait for a covering bundle (policy auto)
# How long a stopping node waits for a background build to reach its next progress step;
# past it the node closes anyway, and the build fails at its next read of the closed store.
BUILD_STOP_TIMEOUT_S = 60.0


def advertised_addresses(config: NodeConfig, listen: str) -> tuple[str, ...]:
    """Addresses peers should dial for ``listen``: ``sync_advertise`` hosts, else the listen
    host, else (a wildcard listener) this machine's name and then its LAN addresses (at most
    ``MAX_ADDRESSES``): a home LAN often resolves no host names, and a peer tries each."""
    if not listen:
        return ()
    host, port = split_host_port(listen)
    hosts = [h.strip() for h in config.sync_advertise.split(",") if h.strip()]
    if not hosts:
        hosts = ([socket.gethostname(), *lan_addresses(listen)][:MAX_ADDRESSES]
                 if host in WILDCARD_HOSTS else [host])
    return tuple(f"[{h}]:{port}" if ":" in h else f"{h}:{port}" for h in hosts)


def backoff_s(failures: int) -> float:
    """Delay before retrying a peer after ``failures`` consecutive failures (full jitter)."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def sync_engine(node: Node, config: NodeConfig, *, identity: DeviceIdentity,
                trust: TrustStore, build: Callable[[str], None],
                await_bundle: Callable[[str], None]) -> SyncEngine:
    """The engine of this device's sync sessions, a serving node's or a one-shot `meshdex
    sync`'s: peers' bundles decided on by ``config.index_policy``, and its builds asked of
    ``build`` (a collection to index here) and ``await_bundle`` (documents arrived that a
    peer's bundle may still cover). fetch: received documents are indexed by the peer's
    bundle only; auto: they wait for the bundle exchange; build: they are built on arrival."""
    bundles = BundleReceiver(node=node, identity=identity, trust=trust,
                             policy=config.index_policy, request_build=build)
    on_applied = {"fetch": None, "auto": await_bundle, "build": build}[config.index_policy]
    return SyncEngine(node=node, identity=identity, on_applied=on_applied,
                      shelf=BundleShelf(node), bundles=bundles,
                      max_clock_skew_ms=config.sync_max_clock_skew_ms)


class _BuildStopped(Exception):
    """Raised from a background build's progress callback once the builder is stopped."""


class DebouncedBuilder:
    """Delta-build a collection once changes to it stopped arriving for ``BUILD_DEBOUNCE_S``
    (or the delay a request names); with ``bundles``, not while one of its bundles is being
    fetched, and not at all when the installed index already holds every document.

    ``stop`` ends a build under way at its next progress step (one embedding window, seconds),
    leaving the installed index as it was: a build of a large collection takes minutes, and
    a stopping node waited for it."""

    def __init__(self, node: Node, *, allow_network_embedders: bool,
                 bundles: BundleReceiver | None = None) -> None:
        self.node, self.allow_network, self.bundles = node, allow_network_embedders, bundles
        self._due: dict[str, float] = {}
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="meshdex-sync-build",
                                        daemon=True)
        self._thread.start()

    def request(self, collection: str, *, after_s: float = BUILD_DEBOUNCE_S) -> None:
        """Build ``collection`` at most ``after_s`` from now. A request never postpones a build
        already due sooner: with sessions every ``sync_interval_s`` each asking for the same
        build, pushing the due time back would starve it for as long as the peer is there."""
        with self._wake:
            due = time.monotonic() + after_s
            self._due[collection] = min(self._due.get(collection, due), due)
            self._wake.notify()

    def await_bundle(self, collection: str) -> None:
        """Documents arrived from a peer: build them unless a covering bundle comes first."""
        self.request(collection, after_s=BUNDLE_GRACE_S)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and not self._ready():
                    self._wake.wait(POLL_INTERVAL_S)
                if self._stopped:
                    return
                now = time.monotonic()
                ready = [c for c, due in self._due.items() if due <= now]
                for collection in ready:
                    del self._due[collection]
            for collection in ready:
                self._build(collection)

    def _ready(self) -> bool:
        now = time.monotonic()
        return any(due <= now for due in self._due.values())

    def _build(self, collection: str) -> None:
        if self.bundles is not None:
            if self.bundles.fetching(collection):
                self.await_bundle(collection)  # the session settles it after the fetch
                return
            if self.bundles.indexed(collection):
                logger.info("not building %r: its index already holds every document",
                            collection)
                return
        try:
            refusal = network_embedder_refusal(self.node.get_collection(collection),
                                               allow_network=self.allow_network)
            if refusal is not None:
                logger.warning("not building %r: %s", collection, refusal)
                return
            self.node.build(collection, progress=self._unless_stopped)
        except _BuildStopped:
            logger.info("background build of %r stopped: the node is stopping", collection)
        except Exception:  # a failed background build must not stop later ones
            logger.exception("background build of %r after sync failed", collection)

    def _unless_stopped(self, stage: str, done: int, total: int) -> None:
        if self._stopped:
            raise _BuildStopped

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=BUILD_STOP_TIMEOUT_S)


@dataclass
class _PeerState:
    due: float = 0.0
    failures: int = 0
    running: bool = False
    error: str | None = None  # the last failed session's, until one succeeds


class SyncScheduler:
    """Runs sessions with every peer that has an address, when due."""

    def __init__(self, *, engine: SyncEngine, trust: TrustStore, interval_s: float,
                 channels: OpenChannels) -> None:
        self.engine, self.trust, self.interval_s = engine, trust, interval_s
        self.channels = channels
        self._states: dict[str, _PeerState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = futures.ThreadPoolExecutor(SESSION_THREADS,
                                                thread_name_prefix="meshdex-sync-session")
        self._thread = threading.Thread(target=self._loop, name="meshdex-sync", daemon=True)
        self._last_seq = -1

    def start(self) -> None:
        self._thread.start()

    def hint(self, device_id: str) -> None:
        """A peer said it has changes: sync with it now (unless it is backing off)."""
        with self._lock:
            state = self._states.setdefault(device_id, _PeerState())
            if state.failures == 0:
                state.due = 0.0

    def _loop(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            try:
                self._tick()
            except Exception:  # keep syncing whatever one pass hit
                logger.exception("sync scheduler pass failed")

    def _tick(self) -> None:
        last_seq = self.engine.store.last_seq
        wrote = last_seq != self._last_seq
        self._last_seq = last_seq
        now = time.monotonic()
        for peer in self.trust.all():
            if not peer.addresses:
                continue
            with self._lock:
                state = self._states.setdefault(peer.device_id, _PeerState())
                if wrote and state.failures == 0:
                    state.due = 0.0
                if state.running or state.due > now:
                    continue
                state.running = True
            self._pool.submit(self._session, peer.device_id)

    def _session(self, device_id: str) -> SessionReport | None:
        try:
            peer = self.trust.find(device_id)
            if peer is None:
                return None
            report = run_session(self.engine, self.engine.identity, self.trust, peer,
                                 channels=self.channels)
            error = report.error or "; ".join(f"{c.collection}: {c.error}"
                                              for c in report.collections if c.error)
            with self._lock:
                state = self._states[device_id]
                before, failures = state.error, state.failures
                state.error = error or None
                state.failures = failures + 1 if error else 0
                state.due = time.monotonic() + (backoff_s(state.failures) if error
                                                else self.interval_s)
            if report.error != STOPPED_MESSAGE:
                _log_outcome(peer.name, error, before=before, failures=failures)
            return report
        finally:
            with self._lock:
                self._states[device_id].running = False

    def halt(self) -> None:
        """Start no more sessions; those running go on (``join``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        """Wait for the sessions running (ending them is closing ``channels``)."""
        self._pool.shutdown(wait=True)

    def stop(self) -> None:
        self.halt()
        self.join()


def _log_outcome(name: str, error: str, *, before: str | None, failures: int) -> None:
    """Log a background session so that a serving node's log (WARNING by default) shows a peer
    sync that keeps failing, without a line per retry: a first failure and a changed error
    are warnings, the same error again is info, and the first success after failures is a
    warning too (it says the ones before are over). Before, every failure was info: unseen."""
    if error and error != before:
        logger.warning("sync with %s failed (retrying with backoff): %s", name, error)
    elif error:
        logger.info("sync with %s failed again (%d in a row): %s", name, failures + 1, error)
    elif failures:
        logger.warning("sync with %s works again, after %d failed attempt%s", name, failures,
                       "" if failures == 1 else "s")


class SyncService:
    """The sync side of one serving node."""

    def __init__(self, node: Node, config: NodeConfig) -> None:
        self.config = config
        data_dir = node.data_dir
        self.identity = load_identity(data_dir)
        self.trust = TrustStore(data_dir)
        self.builder = DebouncedBuilder(
            node, allow_network_embedders=config.sync_allow_network_embedders)
        self.engine = sync_engine(node, config, identity=self.identity, trust=self.trust,
                                  build=self.builder.request,
                                  await_bundle=self.builder.await_bundle)
        self.builder.bundles = self.engine.bundles
        self.channels = OpenChannels()
        self.scheduler = SyncScheduler(engine=self.engine, trust=self.trust,
                                       interval_s=config.sync_interval_s,
                                       channels=self.channels)
        self.desk = PairingDesk(identity=self.identity, trust=self.trust,
                                invites=InviteBook(data_dir), name=socket.gethostname(),
                                sync_addresses=self._advertised_sync_addresses)
        self._servers: list[grpc.Server] = []
        self.addresses: dict[str, str] = {}
        self.discovery: Discovery | None = None

    def _server(self, role: str) -> grpc.Server:
        server = grpc.server(
            futures.ThreadPoolExecutor(SYNC_RPC_THREADS, thread_name_prefix=f"meshdex-{role}"),
            interceptors=[ErrorMappingInterceptor(), PeerAuthInterceptor(self.trust, role)],
            options=[("grpc.max_receive_message_length", MAX_SYNC_MESSAGE_BYTES),
                     ("grpc.max_send_message_length", MAX_SYNC_MESSAGE_BYTES),
                     ("grpc.so_reuseport", 0)],
        )
        sync_pb2_grpc.add_MeshdexSyncServicer_to_server(
            SyncServicer(engine=self.engine, trust=self.trust, desk=self.desk,
                         on_hint=self.scheduler.hint,
                         allow_network_embedders=self.config.sync_allow_network_embedders),
            server)
        return server

    def _listen(self, role: str, listen: str, credentials: grpc.ServerCredentials) -> None:
        server = self._server(role)
        setting = ("sync_listen (--sync-listen)" if role == SYNC_ROLE
                   else "pair_listen (--pair-listen)")
        port = bind_port(server, listen, credentials, setting=setting, can_turn_off=True)
        server.start()
        self._servers.append(server)
        self.addresses[role] = f"{listen.rpartition(':')[0]}:{port}"

    def _advertised_sync_addresses(self) -> tuple[str, ...]:
        """Where peers should dial this node's sync listener now (its port is known only once
        it listens, when ``sync_listen`` names port 0)."""
        return advertised_addresses(self.config,
                                    self.addresses.get(SYNC_ROLE, self.config.sync_listen))

    def start(self) -> None:
        """Open the listeners (``ListenFailed`` if a port is taken) and start syncing."""
        try:
            if self.config.sync_listen:
                self._listen(SYNC_ROLE, self.config.sync_listen,
                             sync_server_credentials(self.identity, self.trust))
            if self.config.pair_listen:
                self._listen(PAIRING_ROLE, self.config.pair_listen,
                             pairing_server_credentials(self.identity))
        except BaseException:
            self.stop(0)
            raise
        if SYNC_ROLE in self.addresses:
            try:
                check_tls_1_3_only(self.addresses[SYNC_ROLE], self.identity)
            except SyncError:
                self.stop(0)
                raise
        self.scheduler.start()
        self._start_discovery()
        logger.info("meshdex sync listening on %s (device %s)", self.addresses,
                    self.identity.device_id)

    def _start_discovery(self) -> None:
        """Announce and browse on the LAN (in the background) when the config allows it."""
        listen = self.addresses.get(SYNC_ROLE, "")
        if not discovery_active(self.config.discovery, listen):
            return
        self.discovery = Discovery(
            identity=self.identity, trust=self.trust,
            announcement=Announcement(device_id=str(self.identity.device_id),
                                      addresses=lan_addresses(listen),
                                      port=split_host_port(listen)[1]),
            current_addresses=lambda: lan_addresses(listen))
        self.discovery.start()

    def sync_now(self, device_id: str | None = None) -> list[SessionReport]:
        """One session with one peer (or every peer with an address), now."""
        peers = [self.trust.get(device_id)] if device_id else self.trust.all()
        return [run_session(self.engine, self.identity, self.trust, peer,
                            channels=self.channels) for peer in peers
                if peer.addresses or device_id]

    def stop(self, grace_period_s: float) -> None:
        if self.discovery is not None:
            self.discovery.stop()
            self.discovery = None
        self.scheduler.halt()
        # One grace period for everything in flight: the servers' calls (stopped one after
        # another, each could take all of it, and a node with a pairing port would outlast
        # its grace twice over) and the sessions this node dialled (the scheduler's, a
        # `meshdex sync`'s), whose channels are closed when it is over.
        cut_sessions = threading.Timer(grace_period_s, self.channels.close)
        cut_sessions.daemon = True
        cut_sessions.start()
        stopped = [server.stop(grace_period_s) for server in self._servers]
        for event in stopped:
            event.wait()
        self._servers.clear()
        self.scheduler.join()
        cut_sessions.cancel()
        self.channels.close()
        self.builder.stop()
