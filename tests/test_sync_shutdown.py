"""A stopping sync service gives its servers (sync and pairing) one grace period between
them, not one each: their in-flight calls keep a node no longer than its grace. Sessions the
node dialled share that grace and are then ended: a peer that stopped answering (a laptop
suspended mid-session) holds no stopping node for its calls' deadlines."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from pathlib import Path

import pytest
from fakes import SlowHashingEmbedder
from meshdex.index.length_batches import EMBED_WINDOW_PASSAGES
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.sync.client import CALL_TIMEOUT_S, STOPPED_MESSAGE
from meshdex.sync.service import DebouncedBuilder
from sync_support import pair, start_sync_node, stop_sync_node, wait_for

GRACE_S = 2.0


class _CallsRunOutTheGrace:
    """A real server whose in-flight calls take all of a stop's grace: the double is the
    calls' duration, the server and its stopping are real."""

    def __init__(self, server) -> None:
        self.server = server

    def stop(self, grace: float) -> threading.Event:
        done = threading.Event()

        def finish() -> None:
            self.server.stop(None).wait()
            done.set()

        threading.Timer(grace, finish).start()
        return done


def test_the_servers_of_a_stopping_node_share_one_grace_period(tmp_path: Path) -> None:
    node = start_sync_node(tmp_path, "a")
    try:
        servers = node.service._servers
        assert len(servers) == 2, "a serving node has a sync and a pairing server"
        node.service._servers = [_CallsRunOutTheGrace(server) for server in servers]
        started = time.monotonic()
        node.service.stop(GRACE_S)
        took = time.monotonic() - started
    finally:
        node.node.close()
    assert took < GRACE_S * 1.75, f"stopping took {took:.1f} s with a grace of {GRACE_S} s"


@pytest.fixture
def silent_peer(tmp_path: Path):
    """Node a, paired with a peer whose address now leads to a socket that takes connections
    and never answers (TCP up, no TLS): a's sessions with it hang until their deadline."""
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    pair(a, b)
    peer_id = b.device_id
    stop_sync_node(b)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    a.service.trust.set_address(peer_id, f"127.0.0.1:{silent.getsockname()[1]}")
    yield a, peer_id, silent
    silent.close()
    a.node.close()


def _dialled(silent: socket.socket) -> bool:
    """A connection waits in the silent socket's backlog: a session is in flight."""
    return bool(select.select([silent], [], [], 30)[0])


def _timed_stop(node) -> float:
    started = time.monotonic()
    node.service.stop(GRACE_S)
    return time.monotonic() - started


def test_a_stopping_node_ends_its_scheduled_session_with_a_silent_peer(silent_peer) -> None:
    a, peer_id, silent = silent_peer
    a.service.scheduler.hint(peer_id)
    assert _dialled(silent), "the scheduler never dialled the peer"
    took = _timed_stop(a)
    assert took < GRACE_S * 1.75, (
        f"stopping took {took:.1f} s with a grace of {GRACE_S} s (a call's deadline: "
        f"{CALL_TIMEOUT_S} s)")
    [peer] = a.service.trust.all()
    assert peer.last_error is None or STOPPED_MESSAGE not in peer.last_error


def test_a_stopping_node_ends_a_sync_now_session_and_says_why(silent_peer) -> None:
    a, peer_id, silent = silent_peer
    a.service.scheduler.halt()  # only the sync_now below dials
    reports = []
    caller = threading.Thread(target=lambda: reports.extend(a.service.sync_now(peer_id)))
    caller.start()
    assert _dialled(silent), "sync_now never dialled the peer"
    took = _timed_stop(a)
    caller.join(GRACE_S)
    assert took < GRACE_S * 1.75, f"stopping took {took:.1f} s with a grace of {GRACE_S} s"
    assert [r.error for r in reports] == [STOPPED_MESSAGE]


def test_stopping_ends_a_background_build_at_its_next_step_and_keeps_the_index(
        tmp_path, caplog) -> None:
    """Ten embedding windows of a second each: the builder stops after the one under way
    instead of finishing the build (a real collection's build takes minutes)."""
    embedder = SlowHashingEmbedder(seconds=1.0)
    windows = 10
    with Node.open(tmp_path / "n") as node:
        node.indexes = IndexManager(node.store, embedder_factory=lambda info: embedder)
        node.create_collection("c")
        node.upsert_documents("c", [DocumentInput(id=f"d{i}", text=f"note number {i}")
                                    for i in range(EMBED_WINDOW_PASSAGES * windows)])
        builder = DebouncedBuilder(node, allow_network_embedders=False)
        caplog.set_level(logging.INFO, logger="meshdex.sync.service")
        builder.request("c", after_s=0)
        wait_for(lambda: embedder.model_calls > 0, what="the build to start embedding")
        started = time.monotonic()
        builder.stop()
        took = time.monotonic() - started
        assert took < 0.4 * windows * embedder.seconds, f"stop took {took:.1f} s"
        assert "background build of 'c' stopped: the node is stopping" in caplog.text
        assert node.indexes.manifest("c") is None  # nothing half-built was installed
