"""``meshdex --node ... --tls-ca ...`` when TLS cannot be set up says what is wrong with TLS
and what to pass, instead of "node unavailable ... check that `meshdex serve` runs at that
address and its model loads" (it runs, and its model loads). Real ``meshdex`` subprocesses
against a real node serving TLS (or plaintext) on loopback, with real certificates.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest
from cryptography import x509
from grpc_support import self_signed_certificate, started_node
from meshdex.node.cli.main import EXIT_CODES
from meshdex.node.errors import InvalidArgument
from meshdex.node.service import Node

NOT_RUNNING_HINT = "its model loads"
LOOPBACK_IP = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def _meshdex(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MESHDEX_NODE", None)
    return subprocess.run([sys.executable, "-m", "meshdex.node.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    """A node serving TLS with a certificate for 127.0.0.1, and one for a host name only."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(root / "node", LOOPBACK_IP, common_name="desktop")
    with Node.open(root / "data") as node, started_node(
            root / "data", node=node, listen="0.0.0.0:0", tls_cert=cert, tls_key=key) as server:
        port = server.address.rpartition(":")[2]
        yield f"127.0.0.1:{port}", server.tokens["read"], cert, root


def test_the_right_certificate_works(tls_node):
    address, token, cert, _ = tls_node
    result = _meshdex("--node", address, "--token", token, "--tls-ca", str(cert), "list")
    assert result.returncode == 0, result.stderr


def test_an_untrusted_certificate_is_named_and_the_hint_says_tls_ca(tls_node):
    address, token, _, root = tls_node
    other, _ = self_signed_certificate(root / "other", [x509.DNSName("other")],
                                       common_name="desktop")
    result = _meshdex("--node", address, "--token", token, "--tls-ca", str(other), "list")
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "certificate" in line and "not trusted" in line, line
    assert "--tls-ca" in line.partition("hint:")[2], line
    assert NOT_RUNNING_HINT not in line


def test_tls_ca_against_a_plaintext_node_says_it_is_plaintext(tmp_path):
    cert, _ = self_signed_certificate(tmp_path / "node", LOOPBACK_IP,
                                      common_name="desktop")
    with Node.open(tmp_path / "data") as node, started_node(tmp_path / "data",
                                                            node=node) as server:
        result = _meshdex("--node", server.address, "--token", server.tokens["read"],
                          "--tls-ca", str(cert), "list")
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "plaintext" in line, line
    assert "leave out --tls-ca" in line.partition("hint:")[2], line


def test_a_plaintext_client_of_a_tls_node_is_told_to_pass_tls_ca(tls_node):
    address, token, _, _ = tls_node
    result = _meshdex("--node", address, "--token", token, "list")
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "--tls-ca" in line.partition("hint:")[2], line


def test_a_certificate_naming_another_host_says_which_address_it_lacks(tmp_path):
    cert, key = self_signed_certificate(tmp_path / "node", [x509.DNSName("desktop")],
                                        common_name="desktop")
    with Node.open(tmp_path / "data") as node, started_node(
            tmp_path / "data", node=node, listen="0.0.0.0:0", tls_cert=cert,
            tls_key=key) as server:
        port = server.address.rpartition(":")[2]
        result = _meshdex("--node", f"127.0.0.1:{port}", "--token", server.tokens["read"],
                          "--tls-ca", str(cert), "list")
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "does not name 127.0.0.1" in line, line
    assert NOT_RUNNING_HINT not in line


def test_a_tls_ca_file_that_is_not_pem_is_refused_before_dialling(tls_node, tmp_path):
    address, token, _, _ = tls_node
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("these are notes, not a certificate\n")
    result = _meshdex("--node", address, "--token", token, "--tls-ca", str(not_pem), "list")
    line = _one_error_line(result)  # nothing from gRPC's C core either
    assert result.returncode == EXIT_CODES[InvalidArgument]
    assert "PEM certificate" in line and str(not_pem) in line, line
