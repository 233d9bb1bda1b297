"""``meshdex status`` and the Status RPC show peer sync: each peer's lag in changes (this
device's changes since the peer's acknowledged cursor), last sync and last error, and the
conflict records kept per collection — the same through the node as embedded."""

from __future__ import annotations

from pathlib import Path

from grpc_support import started_node
from meshdex.sync.admin import LocalSyncAdmin
from sync_support import pair, start_sync_node, stop_sync_node, tick_past


def test_status_shows_each_peers_lag_last_sync_last_error_and_conflicts(tmp_path: Path) -> None:
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    stopped = []
    try:
        for node in (a, b):
            node.service.scheduler.stop()  # sessions run when the test says
        pair(a, b)
        a.node.peers_source = LocalSyncAdmin(a.service.config, service=a.service).peers
        a.add("notes", {"doc": "first", "other": "x"})
        [peer] = a.node.status().peers
        assert (peer.device_id, peer.lag, peer.last_sync) == (b.device_id, 2, None)

        a.service.sync_now()
        a.add("notes", {"doc": "edited on a"})
        tick_past(a)
        b.add("notes", {"doc": "edited on b, later"})  # wins; a keeps its edit as a conflict
        a.service.sync_now()
        with started_node(tmp_path / "a", node=a.node) as server, server.client("read") as client:
            remote = client.status()
        embedded = a.node.status()
        assert remote.peers == embedded.peers and remote.conflicts == embedded.conflicts
        [peer] = remote.peers
        assert (peer.lag, peer.last_error) == (0, None) and peer.last_sync is not None
        assert remote.conflicts == {"notes": 1}
        assert remote.to_dict()["sync"]["conflicts"] == 1

        stop_sync_node(b)
        stopped.append(b)
        a.add("notes", {"new": "not yet on b"})
        a.service.sync_now()
        [peer] = a.node.status().peers
        assert peer.lag == 1 and "unreachable" in (peer.last_error or "")
    finally:
        for node in (a, b):
            if node not in stopped:
                stop_sync_node(node)
