"""Fixtures' building blocks for the gRPC tests: a real node server on a loopback port.

``started_node`` opens a real ``Node`` (real LMDB) in a temp dir, creates one bearer token per
scope, and serves it on 127.0.0.1 with an OS-chosen port; ``client`` connects with a scope's
token. Used by every ``tests/test_grpc_*.py``.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from meshdex.node.auth import SCOPES, TokenStore
from meshdex.node.client import MeshdexClient
from meshdex.node.config import NodeConfig
from meshdex.node.server import RunningServer, start_server
from meshdex.node.service import Node


@dataclass(kw_only=True)
class NodeServer:
    """A running test server and what a test needs to talk to it."""

    node: Any  # the real Node, or a mechanics double
    config: NodeConfig
    running: RunningServer
    tokens: dict[str, str]  # scope -> bearer token

    @property
    def address(self) -> str:
        return self.running.address

    def client(self, scope: str | None = "admin", **options: Any) -> MeshdexClient:
        return MeshdexClient(self.address, token=self.tokens[scope] if scope else None,
                             **options)

    def metadata(self, scope: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[scope]}"),)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)


def loopback_config(data_dir: Path, **overrides: Any) -> NodeConfig:
    return replace(NodeConfig(data_dir=data_dir, listen="127.0.0.1:0"), **overrides)


@contextmanager
def started_node(data_dir: Path, *, node: Any = None, **overrides: Any) -> Iterator[NodeServer]:
    """Serve ``node`` (default: a real ``Node`` opened in ``data_dir``) until the block ends."""
    config = loopback_config(data_dir, **overrides)
    tokens_store = TokenStore(data_dir)
    tokens = {scope: tokens_store.create(scope)[1] for scope in SCOPES}
    own_node = node is None
    node = Node.open(data_dir) if own_node else node
    running = start_server(node, config)
    try:
        yield NodeServer(node=node, config=config, running=running, tokens=tokens)
    finally:
        running.stop(0)
        if own_node:
            node.close()


ADDRESS_LINE = re.compile(r"listening on (\S+)")


class ServeProcess:
    """``python -m meshdex --data-dir D serve`` on OS-chosen loopback ports (query API, sync
    and pairing: none on the defaults, which another test's node or the machine may hold) and
    the query address it bound. Every one started is kept in ``STARTED``, so that a test that
    fails before stopping its server does not leave it running (see conftest)."""

    STARTED: list[ServeProcess] = []

    def __init__(self, data_dir, *extra: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "meshdex", "--data-dir", str(data_dir),
             "serve",
             "--listen", "127.0.0.1:0", "--sync-listen", "127.0.0.1:0",
             "--pair-listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        ServeProcess.STARTED.append(self)
        self.stderr_lines: list[str] = []
        self.address = self._wait_for_address()

    def _wait_for_address(self) -> str:
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            match = ADDRESS_LINE.search(line)
            if match:
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return match.group(1)
        raise AssertionError("serve exited before listening:\n" + "".join(self.stderr_lines))

    def _drain(self) -> None:
        self.stderr_lines.extend(self.process.stderr)

    def _signal_a_thread(self, sig: int) -> None:
        pid = self.process.pid
        threads = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
        assert threads, "serve runs its servers on threads of their own"
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.tgkill(pid, threads[-1], sig) != 0:
            raise OSError(ctypes.get_errno(), f"tgkill({pid}, {threads[-1]}, {sig})")

    @classmethod
    def kill_leftovers(cls) -> None:
        """Kill every started server that is still running."""
        while cls.STARTED:
            serve = cls.STARTED.pop()
            if serve.process.poll() is None:
                serve.process.kill()
                serve.process.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20, *,
             to_a_thread: bool = False) -> int:
        """Send ``sig`` and wait for the exit code. A server still running after
        ``timeout_s`` is made to print every thread's stack (faulthandler, on SIGABRT) and
        killed, and the failure shows the stacks: left running, it kept the default sync
        port and failed every later test that serves. ``to_a_thread`` delivers ``sig`` to
        one of the server's threads other than the main one (``tgkill``), as the kernel may
        deliver a signal sent to the process."""
        if to_a_thread:
            self._signal_a_thread(sig)
        else:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self._drainer.join(5)  # stderr closed: the stacks are read
            raise AssertionError(f"serve did not exit within {timeout_s} s of signal {sig}:\n"
                                 + "".join(self.stderr_lines[-200:])) from None


def self_signed_certificate(folder: Path, names: list[x509.GeneralName], *,
                            common_name: str = "meshdex-test") -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for ``names`` and its key, as ``node.crt`` and
    ``node.key`` under ``folder``: what a node serving beyond loopback is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "node.crt", folder / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
