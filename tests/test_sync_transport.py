"""What the sync listener's TLS accepts: TLS 1.3 by default, and no handshake at all for a
certificate that is not paired, whatever the protocol version."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from meshdex.node.config import split_host_port
from meshdex.sync.identity import PEER_TLS_NAME, load_identity
from sync_support import pair, start_sync_node, stop_sync_node


@pytest.fixture
def nodes(tmp_path: Path):
    started = [start_sync_node(tmp_path, name) for name in ("a", "b")]
    yield started
    for node in started:
        stop_sync_node(node)


def _handshake(address: str, identity, *, maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED) -> str:
    """Handshake and one read (where a TLS 1.3 server reports a refused client certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.maximum_version = maximum
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(identity.cert_path, identity.key_path)
    with socket.create_connection(split_host_port(address), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=PEER_TLS_NAME) as tls:
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        if not tls.recv(1):
            raise ssl.SSLError("closed")
        return tls.version()


def test_a_paired_device_negotiates_tls_1_3(nodes) -> None:
    a, b = nodes
    pair(a, b)
    assert _handshake(a.sync_address, b.service.identity) == "TLSv1.3"


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_an_unpaired_certificate_gets_no_connection(nodes, tmp_path, maximum) -> None:
    a, _ = nodes
    stranger = load_identity(tmp_path / "stranger")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(a.sync_address, stranger, maximum=maximum)
