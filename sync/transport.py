"""Mutual TLS for sync: server credentials that follow the trust store, pinned client channels.

grpcio (Python) has no certificate-verify callback, so trust is enforced twice:

1. at the handshake, the sync listener's ``dynamic_ssl_server_credentials`` asks
   ``TrustStore.certificates()`` for its client trust list on every new connection, so a
   pairing or removal takes effect on the next handshake without a restart; and
2. on every call, ``caller_device_id`` hashes the certificate the connection was made with
   (``context.auth_context()``) and the interceptor looks it up in the trust store, so a
   removed peer is refused on its next call even on a connection opened before removal.

Clients pin: the server's certificate is the only trust anchor of the channel, and the fixed
name ``PEER_TLS_NAME`` is expected whatever address is dialled. A device id seen for the first
time (``join``, ``peer add``) is pinned by fetching the certificate with ``ssl`` first and
checking its SHA-256 against the id before any gRPC call.

TLS 1.3 only, both ways: grpcio's Python API has no minimum version, so TLS 1.2 is left
without a usable cipher (``meshdex.sync.tls_policy``, set when ``meshdex`` is imported), and
``check_tls_1_3_only`` refuses to start sync in a process where that came too late.
"""

from __future__ import annotations

import socket
import ssl
import threading

import grpc
from cryptography.hazmat.primitives.serialization import Encoding
from meshdex.node.config import split_host_port
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import PeerIdentityMismatch, SyncError
from meshdex.sync.identity import PEER_TLS_NAME, DeviceIdentity, certificate_from_pem
from meshdex.sync.trust import TrustStore

# How long a dial waits for a TCP connection: a LAN peer answers in milliseconds, and an
# address that drops packets (an old Wi-Fi address, a host gone from the network) then costs
# this instead of gRPC's own 20 s before the peer's next address is tried.
CONNECT_TIMEOUT_S = 5.0
REFUSAL_PROBE_TIMEOUT_S = 3.0  # after a failed call: a dead address must not cost much more
# The client connection preface and an empty SETTINGS frame (RFC 9113, section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
MAX_SYNC_MESSAGE_BYTES = 64 * 1024 * 1024


def sync_server_credentials(identity: DeviceIdentity, trust: TrustStore) -> grpc.ServerCredentials:
    """Client certificates required; trusted: this device and the paired peers, re-read on
    every handshake."""
    pair = [(identity.key_pem, identity.cert_pem)]
    lock = threading.Lock()
    current: list[bytes] = []

    def configuration() -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            pair, root_certificates=b"".join([identity.cert_pem, *current]))

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        latest = trust.certificates()
        with lock:
            if latest == current:
                return None
            current[:] = latest
            return configuration()

    fetch()
    return grpc.dynamic_ssl_server_credentials(configuration(), fetch,
                                               require_client_authentication=True)


def _unverified_context(identity: DeviceIdentity | None, *,
                        version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                        at_most: bool = False) -> ssl.SSLContext:
    """A client context for the handshakes made with ``ssl`` rather than gRPC: TLS
    ``version`` at least (or ``at_most``), HTTP/2 offered, the server's certificate not
    verified (the caller checks its hash), ``identity`` presented when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if at_most:
        context.maximum_version = version
    else:
        context.minimum_version = version
    context.set_alpn_protocols(["h2"])
    if identity is not None:
        context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


def check_tls_1_3_only(address: str, identity: DeviceIdentity) -> None:
    """Try a TLS 1.2 handshake with the listener at ``address`` (presenting this device's
    own, trusted certificate); ``SyncError`` if it succeeds: this process imported ``grpc``
    before ``meshdex``, so gRPC core never saw the TLS policy."""
    host, port = split_host_port(address)
    context = _unverified_context(identity, version=ssl.TLSVersion.TLSv1_2, at_most=True)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw, \
                context.wrap_socket(raw, server_hostname=PEER_TLS_NAME):
            pass
    except (OSError, ssl.SSLError):
        return  # refused, as it must be
    raise SyncError(f"the sync listener on {address} accepts TLS 1.2",
                    hint="import meshdex before grpc: gRPC reads its TLS settings when it is "
                    "imported (meshdex.sync.tls_policy)")


def pairing_server_credentials(identity: DeviceIdentity) -> grpc.ServerCredentials:
    """Server authentication only: a joiner has no trusted certificate yet."""
    return grpc.ssl_server_credentials([(identity.key_pem, identity.cert_pem)],
                                       require_client_auth=False)


def caller_device_id(context: grpc.ServicerContext) -> DeviceId | None:
    """The device id of the certificate the caller's connection presented, if any."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    cert = certificate_from_pem(pems[0])
    return DeviceId.from_certificate_der(cert.public_bytes(Encoding.DER))


def refuses_our_certificate(address: str, expected: DeviceId, identity: DeviceIdentity, *,
                            timeout_s: float = REFUSAL_PROBE_TIMEOUT_S) -> bool:
    """Whether the device ``expected`` answers at ``address`` but will not take ``identity``'s
    certificate: it has not paired with this device, or has removed it.

    gRPC reports that handshake failure as UNAVAILABLE, exactly like a dead address. In TLS
    1.3 the client's handshake completes before the server judges the client certificate, so
    this one is made with ``ssl``: the server's certificate is checked against ``expected``,
    the HTTP/2 preface is sent, and a server that accepted the certificate answers with its
    SETTINGS frame, while one that refused it closes the connection (grpc sends no alert).
    """
    host, port = split_host_port(address)
    context = _unverified_context(identity)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=PEER_TLS_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
            if der is None or DeviceId.from_certificate_der(der) != expected:
                return False
            return _dropped_after_our_certificate(tls)
    except OSError:  # ssl.SSLError included: nothing there, not TLS, or too slow
        return False


def _dropped_after_our_certificate(tls: ssl.SSLSocket) -> bool:
    try:
        tls.sendall(HTTP2_PREFACE)
        return tls.recv(1) == b""  # closed rather than answered
    except ssl.SSLError as error:
        return "ALERT" in (error.reason or "")  # a server that says why it refuses
    except (ConnectionResetError, BrokenPipeError):
        return True
    except OSError:
        return False


def fetch_certificate(address: str, expected: DeviceId, *,
                      identity: DeviceIdentity | None = None,
                      timeout_s: float = CONNECT_TIMEOUT_S) -> bytes:
    """The PEM certificate the server at ``address`` presents, if it hashes to ``expected``.

    Verification is off for this one handshake on purpose: the check is the hash, which is
    stronger than any CA. ``identity`` is presented as client certificate (the sync listener
    asks for one; in TLS 1.3 the server's certificate arrives before ours is judged).
    """
    host, port = split_host_port(address)
    context = _unverified_context(identity)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=PEER_TLS_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise SyncError(f"cannot reach {address}: {error}", peer=str(expected),
                        hint="is `meshdex serve` running there, and the address right?") from None
    if der is None or DeviceId.from_certificate_der(der) != expected:
        raise PeerIdentityMismatch(
            f"the device at {address} is not {expected}", peer=str(expected),
            hint="someone else answers at that address, or the id was copied wrong")
    return ssl.DER_cert_to_PEM_cert(der).encode()


def pinned_channel(address: str, server_cert_pem: bytes | str, *,
                   identity: DeviceIdentity | None) -> grpc.Channel:
    """A channel to ``address`` that trusts only ``server_cert_pem`` (and presents
    ``identity``'s certificate when given), whose calls fail UNAVAILABLE when no connection
    is made within ``CONNECT_TIMEOUT_S``."""
    pem = server_cert_pem.encode() if isinstance(server_cert_pem, str) else server_cert_pem
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pem,
        private_key=identity.key_pem if identity else None,
        certificate_chain=identity.cert_pem if identity else None,
    )
    return grpc.secure_channel(address, credentials, options=[
        ("grpc.ssl_target_name_override", PEER_TLS_NAME),
        # gRPC core's name for the deadline of each connection attempt (default 20 s)
        ("grpc.min_reconnect_backoff_ms", int(CONNECT_TIMEOUT_S * 1000)),
        ("grpc.max_receive_message_length", MAX_SYNC_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_SYNC_MESSAGE_BYTES),
    ])
