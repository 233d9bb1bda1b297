"""Building blocks for the sync tests: in-process sync nodes and ``meshdex serve`` processes.

``SyncNode`` is a real ``Node`` (real LMDB) with a real ``SyncService`` on OS-chosen loopback
ports (real gRPC, real mutual TLS). ``SyncServeProcess`` runs ``python -m meshdex serve`` with
fixed free ports, for tests that need separate processes (kill -9, the CLI end to end).
``pair(inviter, joiner)`` pairs two nodes through a real invite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshdex.index.embedder import Embedder
from meshdex.index.embedders import EmbedderSpec
from meshdex.node.config import NodeConfig
from meshdex.node.errors import CollectionExists
from meshdex.node.hlc import wall_clock_ms
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store
from meshdex.sync.client import join
from meshdex.sync.pairing import InviteBook, InviteToken
from meshdex.sync.service import SyncService

# A collection whose embedder is an (absent) http server: sync never builds it on its own,
# so mechanics tests move documents without loading a model.
UNBUILT = EmbedderSpec(kind="http", url="http://127.0.0.1:9/", model_id="none")


@dataclass(kw_only=True)
class SyncNode:
    name: str
    node: Node
    service: SyncService

    @property
    def sync_address(self) -> str:
        return self.service.addresses["sync"]

    @property
    def pair_address(self) -> str:
        return self.service.addresses["pairing"]

    @property
    def device_id(self) -> str:
        return str(self.service.identity.device_id)

    def add(self, collection: str, docs: dict[str, str]) -> None:
        try:
            self.node.create_collection(collection, embedder=UNBUILT)
        except CollectionExists:
            pass  # made here before, or a paired peer's session just brought it
        self.node.upsert_documents(collection,
                                   [DocumentInput(id=k, text=v) for k, v in docs.items()])

    def texts(self, collection: str) -> dict[str, str]:
        if not self.node.store.has_collection(collection):
            return {}
        return {d.id: d.text for d in self.node.store.iter_documents(collection)}

    def invite(self, collections: tuple[str, ...] = ("notes",), *, read_only: bool = False,
               ttl_s: float = 60.0) -> str:
        invite = InviteBook(self.node.data_dir).create(collections=collections,
                                                       read_only=read_only, ttl_s=ttl_s)
        return InviteToken(device_id=self.service.identity.device_id,
                           invite_id=invite.invite_id, secret=invite.secret,
                           pair_addresses=(self.pair_address,),
                           sync_addresses=(self.sync_address,)).encode()


def start_sync_node(root: Path, name: str, *, embedder: Embedder | None = None,
                    **overrides: Any) -> SyncNode:
    """A serving sync node; with ``embedder`` every collection builds with it (a counting
    fake), whatever embedder the collection names."""
    config = NodeConfig(data_dir=root / name, **{
        "sync_listen": "127.0.0.1:0", "pair_listen": "127.0.0.1:0", "sync_interval_s": 0.5,
        **overrides})
    node = Node.open(root / name)
    if embedder is not None:
        node.indexes = IndexManager(node.store, embedder_factory=lambda _info: embedder)
    service = SyncService(node, config)
    service.start()
    return SyncNode(name=name, node=node, service=service)


def stop_sync_node(node: SyncNode) -> None:
    node.service.stop(0)
    node.node.close()


def quiet_nodes_a_b_paired(root: Path) -> dict[str, SyncNode]:
    """Nodes a, b and d whose sessions run only when a test says so; a and b paired."""
    started = {name: start_sync_node(root, name, sync_interval_s=3600) for name in ("a", "b", "d")}
    for node in started.values():
        node.service.scheduler.stop()
    pair(started["a"], started["b"])
    return started


def pair(inviter: SyncNode, joiner: SyncNode, collections: tuple[str, ...] = ("notes",),
         *, read_only: bool = False):
    return join(joiner.node.data_dir, inviter.invite(collections, read_only=read_only),
                addresses=(joiner.sync_address,))


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 30.0,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def tick_past(*nodes: SyncNode) -> None:
    """Wait until the wall clock is past every stamp these nodes issued, so that the next
    write anywhere is ordered after theirs. Two writes in one millisecond on two devices are
    ordered by device id (random here), so a test that means "later" must make it so."""
    newest = max((n.node.store.max_hlc for n in nodes if n.node.store.max_hlc), default=None)
    while newest is not None and wall_clock_ms() <= newest.physical_ms:
        time.sleep(0.001)


PORT_RETRIES = 3
RESTART_RETRY_S = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def store_digest(data_dir: Path, collection: str) -> dict[str, Any]:
    """What must be identical on converged devices: live texts, tombstoned ids and conflict
    records (all but the seq each device kept them at), read from the store of a (possibly
    serving) data directory. A collection not yet replicated holds nothing, so a test can
    poll before the first session has created it."""
    with Store.open(data_dir, readonly=True) as store:
        return digest_of(store, collection)


def digest_of(store: Store, collection: str) -> dict[str, Any]:
    """``store_digest`` of an open store (an in-process node's)."""
    if not store.has_collection(collection):
        return {"live": {}, "deleted": [], "conflicts": []}
    live = {d.id: (d.text, d.hlc.to_str()) for d in store.iter_documents(collection)}
    deleted = sorted({c.doc_id for c in store.changes_since(0, collection=collection)}
                     - set(live))
    conflicts = [(c.doc_id, c.hlc.to_str(), c.winner_hlc.to_str(), c.op.value,
                  c.origin_device, c.text, c.metadata, c.source)
                 for c in store.conflicts(collection)]
    return {"live": live, "deleted": deleted, "conflicts": conflicts}


STOP_TIMEOUT_S = 30
SYNC_LINE = re.compile(r"meshdex sync on (\S+) \(pairing (\S+)\)")
NODE_LINE = re.compile(r"listening on (\S+)")


@dataclass
class SyncServeProcess:
    """``python -m meshdex --data-dir D serve`` on free loopback ports, stderr collected."""

    data_dir: Path
    sync_port: int = field(default_factory=free_port)
    pair_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    node_address: str = ""
    launcher: tuple[str, ...] = (sys.executable, "-m", "meshdex")  # how meshdex is run

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HF_HUB_OFFLINE": "1", "MESHDEX_DATA_DIR": str(self.data_dir),
                "MESHDEX_SYNC_LISTEN": f"127.0.0.1:{self.sync_port}",
                "MESHDEX_PAIR_LISTEN": f"127.0.0.1:{self.pair_port}",
                "MESHDEX_SYNC_INTERVAL_S": "0.5",
                "MESHDEX_ALLOW_UNAUTHENTICATED_LOOPBACK": "true",
                "PYTHONFAULTHANDLER": "1"}  # a node that will not stop dumps its threads

    def start(self) -> SyncServeProcess:
        """Start serving. A port can be taken meanwhile by any socket the kernel hands it to
        (the probe let it go, and an outgoing connection's ephemeral port may be it, e.g. a
        peer dialling this stopped node). A first start retries on new ports; a restart keeps
        its ports (peers know the address) and retries them once that socket is gone."""
        first = self.process is None
        for _ in range(PORT_RETRIES - 1):
            try:
                return self._start()
            except AssertionError:
                if not any("Address already in use" in line for line in self.lines):
                    raise
                if first:
                    self.sync_port, self.pair_port = free_port(), free_port()
                else:
                    time.sleep(RESTART_RETRY_S)
        return self._start()

    def _start(self) -> SyncServeProcess:
        self.lines = []
        self.process = subprocess.Popen(
            [*self.launcher, "serve", "--listen", "127.0.0.1:0"],
            stderr=subprocess.PIPE, text=True, env=self.env)
        for line in self.process.stderr:
            self.lines.append(line)
            match = NODE_LINE.search(line)
            if match:
                self.node_address = match.group(1)
                threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
                break
        else:
            raise AssertionError("serve exited early:\n" + "".join(self.lines))
        assert any(SYNC_LINE.search(line) for line in self.lines), "".join(self.lines)
        return self

    def _drain(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line)

    def meshdex(self, *args: str, check: bool = True,
                timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.launcher, *args], capture_output=True,
                                text=True, env=self.env, timeout=timeout_s)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` and wait for the node to exit. One still running after
        ``STOP_TIMEOUT_S`` fails the test with its log and, from SIGABRT, every thread's
        stack: where it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGABRT)
                self.process.wait(10)
                time.sleep(0.5)  # the drain thread reads the last lines
                raise AssertionError(
                    f"the node did not stop within {STOP_TIMEOUT_S} s of "
                    f"{signal.Signals(sig).name}:\n" + "".join(self.lines)) from None


def write_jsonl(path: Path, docs: dict[str, str]) -> str:
    """Write ``docs`` (id -> text) as a JSONL file for ``meshdex add --jsonl``; its path."""
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in docs.items()))
    return str(path)
