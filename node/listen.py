"""Binding a gRPC server's listening address, with one clear error when it cannot be had.

grpcio raises a bare ``RuntimeError`` ("Failed to bind to address ...; set GRPC_VERBOSITY")
for an address in use or not this machine's (older releases returned port 0), and ``meshdex
serve`` showed it as a traceback. The reason is found by binding a plain socket the same way.
"""

from __future__ import annotations

import socket

import grpc
from meshdex.node.errors import ListenFailed


def bind_port(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None,
              *, setting: str, can_turn_off: bool = False) -> int:
    """Bind ``address`` (TLS with ``credentials``, else plaintext) and return the port (1 for a
    unix socket); ``ListenFailed`` naming the address, why and ``setting`` (the option to
    change, or with ``can_turn_off`` to empty) when it cannot be bound."""
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenFailed(f"cannot listen on {address} ({setting}): {_why(address)}",
                           hint=f"is another `meshdex serve` or program using it? set {setting} "
                                "to another address" + (', or "" to turn it off' if can_turn_off
                                                        else ""))
    return port


def _why(address: str) -> str:
    """Why ``address`` cannot be bound, as the operating system says it."""
    if address.startswith("unix:"):
        return "the socket path cannot be created"
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as error:
        return f"the address does not resolve ({error})"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(sockaddr)
        except OSError as error:
            return error.strerror or str(error)
    return "gRPC refused it"
