"""``serve()``: the gRPC server of one node, wired in one visible place.

What a call passes through, outermost first: gRPC's message-size limits,
``ErrorMappingInterceptor`` (the one ``MeshdexError`` → status code table), ``AuthInterceptor``
(bearer token scope per RPC, from the call's metadata, before anything waits on the call),
``AdmissionInterceptor`` (a call slot, a per-token cap and an idle limit on request messages;
RESOURCE_EXHAUSTED instead of a queue), then the thin servicer. gRPC's own
``maximum_concurrent_rpcs`` is not used: it counts calls before their token is checked. The
thread pool has ``max_concurrent_rpcs`` threads plus headroom, so refusals and health probes are
answered while every slot is taken. Health (``grpc.health.v1``) and reflection are registered
beside it; the meshdex service's health is NOT_SERVING while every slot is taken.

Shutdown (SIGTERM/SIGINT): health goes NOT_SERVING, new calls are refused, in-flight calls get
``grace_period_s`` to finish, then the node (and its LMDB store) is closed.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from meshdex.node.admission import AdmissionInterceptor, CallSlots
from meshdex.node.auth import SERVICE_NAME, AuthInterceptor, Authorizer, TokenStore
from meshdex.node.config import NodeConfig
from meshdex.node.grpc_errors import ErrorMappingInterceptor
from meshdex.node.listen import bind_port
from meshdex.node.local_endpoint import (
    LocalEndpoint,
    owner_token,
    publish,
    socket_path,
    withdraw,
)
from meshdex.node.paths import PRIVATE_FILE_MODE, resolve_data_dir
from meshdex.node.servicer import MeshdexNodeServicer, NodeAPI
from meshdex.node.stop_flag import StopFlag
from meshdex.proto.meshdex.v1 import node_pb2, node_pb2_grpc

logger = logging.getLogger(__name__)

# Threads beyond max_concurrent_rpcs, so health checks and refusals are answered under load.
HEADROOM_RPCS = 4

# How often the main thread wakes while serving. The kernel delivers SIGTERM to any thread of
# the process, and Python runs its handler on the main thread only when that thread next
# wakes: a main thread asleep without a timeout slept through the signal.
SIGNAL_POLL_S = 0.25


class Companion(Protocol):
    """Something that runs beside the node's server (peer sync) for as long as it serves."""

    def register(self, server: grpc.Server) -> None:
        """Add servicers to the node's server; called before it starts."""

    def start(self) -> None:
        """Called once the node's server is started."""

    def stop(self, grace_period_s: float) -> None:
        """Called before the node's server stops; must not raise."""


@dataclass(kw_only=True)
class RunningServer:
    """A started server: its bound address, and the health servicer to flip on shutdown."""

    server: grpc.Server
    health: health.HealthServicer
    address: str  # what clients dial, e.g. "127.0.0.1:54321" or "unix:/run/meshdex.sock"
    local_address: str | None = None  # the data directory's own socket, when one is bound

    def stop(self, grace_period_s: float) -> None:
        """NOT_SERVING, refuse new calls, let in-flight ones finish for ``grace_period_s``."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_period_s).wait()


def _bind(server: grpc.Server, config: NodeConfig) -> str:
    credentials = (grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
        if config.tls_enabled else None)
    port = bind_port(server, config.listen, credentials, setting="listen (--listen)")
    if config.listen.startswith("unix:"):
        return config.listen
    host = config.listen.rpartition(":")[0]
    return f"{host}:{port}"


def _bind_local_socket(server: grpc.Server, path: Path) -> str:
    if path.is_socket():  # left by a node killed with -9
        path.unlink()
    address = f"unix:{path}"
    bind_port(server, address, None, setting="--data-dir (the node's socket lies in it)")
    os.chmod(path, PRIVATE_FILE_MODE)
    return address


def start_server(node: NodeAPI, config: NodeConfig, *,
                 add_services: Sequence[Callable[[grpc.Server], None]] = (),
                 owner_token: str | None = None,
                 local_socket: Path | None = None) -> RunningServer:
    """Build, bind and start the server for ``node``; the caller owns ``node``'s lifetime.

    ``add_services`` register further servicers (e.g. sync admin) before the server starts.
    ``owner_token`` is accepted with every scope besides the token file's tokens, and
    ``local_socket`` is one more (plaintext) listener: both for this device's own commands
    (``meshdex.node.local_endpoint``).
    """
    config.validate()
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    authorizer = Authorizer(TokenStore(config.data_dir),
                            allow_unauthenticated_loopback=config.allow_unauthenticated_loopback,
                            owner_token=owner_token)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)

    def report_saturation(saturated: bool) -> None:
        health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING
                            if saturated else health_pb2.HealthCheckResponse.SERVING)

    slots = CallSlots(max_calls=config.max_concurrent_rpcs,
                      max_calls_per_caller=config.max_calls_per_token,
                      on_saturation=report_saturation)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_concurrent_rpcs + HEADROOM_RPCS,
                                   thread_name_prefix="meshdex-rpc"),
        interceptors=[
            ErrorMappingInterceptor(),
            AuthInterceptor(authorizer),
            AdmissionInterceptor(slots, idle_timeout_s=config.call_idle_timeout_s),
        ],
        options=options,
    )
    node_pb2_grpc.add_MeshdexNodeServicer_to_server(
        MeshdexNodeServicer(node, max_batch_documents=config.max_batch_documents), server)
    for add_service in add_services:
        add_service(server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = (
        node_pb2.DESCRIPTOR.services_by_name["MeshdexNode"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(service_names, server)
    address = _bind(server, config)
    local_address = _bind_local_socket(server, local_socket) if local_socket else None
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("meshdex node listening on %s (%s)", address,
                   "TLS" if config.tls_enabled else "plaintext, loopback only")
    return RunningServer(server=server, health=health_servicer, address=address,
                         local_address=local_address)


def _publish_local_endpoint(data_dir: Path, config: NodeConfig, running: RunningServer,
                            owner_token: str) -> None:
    """Tell this device's commands where to reach the node (``meshdex.node.local_endpoint``)."""
    address = running.local_address
    if address is None and not config.tls_enabled:
        address = running.address  # validate() allows plaintext on loopback only
    if address is None:
        logger.warning("the data directory's path is too long for a unix socket and the node "
                       "listens with TLS: this device's writing commands need --node")
        return
    publish(data_dir, LocalEndpoint(pid=os.getpid(), address=address, token=owner_token))


def serve(
    config: NodeConfig,
    *,
    open_node: Callable[[NodeConfig], Any],
    on_ready: Callable[[str], None] | None = None,
    companions: Sequence[Callable[[Any, NodeConfig], Companion]] = (),
) -> None:
    """Run a node until SIGTERM or SIGINT, then shut down gracefully and close the store.

    ``open_node(config)`` returns the ``Node`` (a context manager); it is closed only after the
    server has stopped, so every acknowledged write is committed before the store closes.
    ``on_ready(address)`` is called once the server accepts calls. Each of ``companions``
    (e.g. peer sync) is called as ``companion(node, config)``; what it returns registers its
    servicers on the node's server, is started once the server is, and is stopped before it.
    While it serves, this device's own commands reach it through the endpoint it publishes in
    the data directory (``meshdex.node.local_endpoint``), withdrawn first at shutdown.
    """
    stop_requested = StopFlag()

    def request_stop(signum: int, _frame: object) -> None:
        logger.warning("received %s, shutting down (grace %.1f s)",
                       signal.Signals(signum).name, config.grace_period_s)
        stop_requested.set()

    config.validate()
    data_dir = resolve_data_dir(config.data_dir)
    with open_node(config) as node:
        previous = {sig: signal.signal(sig, request_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        running: RunningServer | None = None
        started: list[Companion] = []
        try:
            created = [companion(node, config) for companion in companions]
            token = owner_token(data_dir)
            running = start_server(node, config, add_services=[c.register for c in created],
                                   owner_token=token, local_socket=socket_path(data_dir))
            for companion in created:
                companion.start()
                started.append(companion)
            _publish_local_endpoint(data_dir, config, running, token)
            if on_ready is not None:
                on_ready(running.address)
            while not stop_requested.wait(SIGNAL_POLL_S):
                pass
        finally:
            withdraw(data_dir, os.getpid())
            for companion in reversed(started):
                companion.stop(config.grace_period_s)
            if running is not None:
                running.stop(config.grace_period_s)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    logger.info("meshdex node stopped; store closed")
