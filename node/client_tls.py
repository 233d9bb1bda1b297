"""What a client says when TLS to a node cannot be set up, and the CA file it trusts.

gRPC reports every handshake failure as UNAVAILABLE ("failed to connect to all addresses;
last error: ... CERTIFICATE_VERIFY_FAILED ..."), which ``grpc_errors`` maps to "node
unavailable ... check that `meshdex serve` runs": true of a node that is down, misleading for
one that runs and whose certificate this client does not trust. ``connection_error`` names
the TLS problem and the flag that fixes it, from the one table ``TLS_FAILURES``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from meshdex.index.errors import InvalidArgument, MeshdexError

logger = logging.getLogger(__name__)

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
# A plaintext channel to a TLS listener sees the connection closed and nothing more.
PLAINTEXT_TO_TLS = "Socket closed"


@dataclass(frozen=True)
class TlsFailure:
    """One way a handshake fails: ``marker`` in gRPC's message, what it means, what to do."""

    marker: str
    problem: str
    hint: str


TLS_FAILURES = (
    TlsFailure("CERTIFICATE_VERIFY_FAILED",
               "its TLS certificate is not trusted here",
               "pass the node's certificate (its tls_cert) or the CA that signed it with "
               "--tls-ca FILE"),
    TlsFailure("Hostname Verification Check failed",
               "its TLS certificate does not name {host}",
               "dial a name or address its certificate lists (subjectAltName), or give the "
               "node a certificate that names {host}"),
    TlsFailure("WRONG_VERSION_NUMBER",
               "it answers in plaintext, not TLS",
               "a node without tls_cert serves loopback and unix sockets in plaintext: leave "
               "out --tls-ca (or give the node tls_cert and tls_key)"),
)


def read_ca(path: Path) -> bytes:
    """The PEM certificates in ``path``; ``InvalidArgument`` when it holds none (gRPC would
    fail every call with "Failed to create security handshaker" and log four lines)."""
    pem = Path(path).read_bytes()
    if PEM_CERTIFICATE not in pem:
        raise InvalidArgument(f"--tls-ca {path} holds no PEM certificate",
                              hint="give the node's certificate file (its tls_cert), which "
                                   "starts with '-----BEGIN CERTIFICATE-----'")
    return pem


def connection_error(error: grpc.RpcError, *, target: str, tls: bool) -> MeshdexError | None:
    """The error for a call to ``target`` that failed because TLS could not be set up, or
    None when ``error`` is something else."""
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    details = error.details() or ""
    host = target.rpartition(":")[0].strip("[]") or target
    if tls:
        for failure in TLS_FAILURES:
            if failure.marker in details:
                logger.debug("TLS to %s failed: %s", target, details)
                return MeshdexError(
                    f"cannot talk to the node at {target}: "
                    f"{failure.problem.format(host=host)}",
                    hint=failure.hint.format(host=host))
        return None
    if details.endswith(PLAINTEXT_TO_TLS):
        return MeshdexError(
            f"node unavailable: the node at {target} closed the connection",
            hint="if it serves TLS (tls_cert), pass its certificate with --tls-ca FILE; else "
                 "check that `meshdex serve` runs at that address",
            recoverable=True)
    return None
