"""A stopping sync service gives its servers (sync and pairing) one grace period between
them, not one each: their in-flight calls keep a node no longer than its grace."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sync_support import start_sync_node

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
