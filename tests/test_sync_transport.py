"""What sync's TLS accepts: TLS 1.3 only — a paired device offering TLS 1.2 is refused, and
so is a server that speaks only TLS 1.2 to a meshdex client — and no handshake at all for a
certificate that is not paired, whatever the protocol version. A process where gRPC missed
the policy (``grpc`` imported before ``meshdex``) refuses to start sync."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from grpc_support import ServeProcess
from meshdex.node.config import split_host_port
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync.identity import PEER_TLS_NAME, load_identity
from meshdex.sync.tls_policy import GRPC_CIPHER_SUITES_ENV, GRPC_VERBOSITY_ENV
from meshdex.sync.transport import pinned_channel
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


def test_a_paired_device_offering_only_tls_1_2_is_refused(nodes) -> None:
    a, b = nodes
    pair(a, b)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(a.sync_address, b.service.identity, maximum=ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize(("maximum", "accepted"), [(ssl.TLSVersion.TLSv1_2, False),
                                                   (ssl.TLSVersion.TLSv1_3, True)])
def test_a_client_refuses_a_server_that_speaks_only_tls_1_2(tmp_path, maximum, accepted) -> None:
    """The server presents the pinned certificate itself: only the version can fail it."""
    server, client = load_identity(tmp_path / "server"), load_identity(tmp_path / "client")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = maximum
    context.load_cert_chain(server.cert_path, server.key_path)
    context.set_alpn_protocols(["h2"])
    outcome: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept() -> None:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    outcome.append(tls.version() or "")
            except ssl.SSLError as error:
                outcome.append(f"refused: {error.reason}")

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        with pinned_channel(address, server.cert_pem, identity=client) as channel, \
                pytest.raises(Exception):  # noqa: B017 - not a gRPC server: the call fails
            sync_pb2_grpc.MeshdexSyncStub(channel).Changed(pb.ChangedRequest(), timeout=5)
        thread.join(10)
    assert outcome == (["TLSv1.3"] if accepted else ["refused: NO_SHARED_CIPHER"])


def test_sync_does_not_start_where_grpc_missed_the_tls_policy(tmp_path) -> None:
    script = ("import grpc, sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
              "from sync_support import start_sync_node; start_sync_node(Path(sys.argv[1]), 'n')")
    env = {k: v for k, v in os.environ.items() if k != GRPC_CIPHER_SUITES_ENV}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path),
                             str(Path(__file__).parent)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode != 0
    assert "accepts TLS 1.2" in result.stderr and "import meshdex before grpc" in result.stderr


@pytest.mark.parametrize("verbosity", ["", "INFO"])
def test_refused_handshakes_are_not_logged_unless_asked_for(tmp_path, verbosity) -> None:
    """``meshdex serve``'s own TLS 1.2 check at start and a stranger's handshake leave no
    gRPC core line on stderr; ``GRPC_VERBOSITY=INFO`` brings them back."""
    serve = ServeProcess(tmp_path, env={GRPC_VERBOSITY_ENV: verbosity})  # "": a user's default
    [sync_address] = re.findall(r"meshdex sync on (\S+)", "".join(serve.stderr_lines))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(split_host_port(sync_address), timeout=10) as raw, \
            contextlib.suppress(ssl.SSLError, OSError), \
            context.wrap_socket(raw, server_hostname=PEER_TLS_NAME) as tls:
        assert tls.recv(1) == b""  # refused: no client certificate
    assert serve.stop() == 0
    logged = any("Handshake failed" in line for line in serve.stderr_lines)
    assert logged == (verbosity == "INFO"), "".join(serve.stderr_lines)
