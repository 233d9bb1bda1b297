"""What a user running ``meshdex serve`` (log level WARNING by default) reads in its log about
peer sync: a device pairing with it, a background sync that starts failing (once, not once a
retry), and the sync working again. Before, all of these were info lines: a node whose peer
sync failed every few seconds for days said nothing. Real ``serve`` processes on loopback."""

from __future__ import annotations

import signal
import time

import pytest
from meshdex.sync.trust import TrustStore
from sync_support import SyncServeProcess, wait_for, write_jsonl

NO_MODEL = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9/",
            "--embedder-model", "none")  # documents move, nothing is ever built
RETRIES_S = 8.0  # backoff 1, 2, 4 s: three or four failed attempts


@pytest.fixture
def nodes(tmp_path):
    a, b = SyncServeProcess(tmp_path / "a"), SyncServeProcess(tmp_path / "b")
    for node in (a, b):
        node.meshdex("init", "-c", "notes", *NO_MODEL)
        node.start()
    yield a, b
    for node in (a, b):
        node.stop(signal.SIGKILL)


def _lines(node: SyncServeProcess, text: str) -> list[str]:
    return [line for line in node.lines if text in line]


def test_serve_logs_a_pairing_a_failing_peer_sync_once_and_its_recovery(nodes, tmp_path):
    a, b = nodes
    b.meshdex("join", a.meshdex("invite", "--collections", "notes").stdout.strip(),
              "--name", "laptop")
    paired = wait_for(lambda: _lines(a, "paired with a new device"), what="the pairing line")
    assert paired[0].startswith("WARNING") and "laptop" in paired[0] and "notes" in paired[0]

    b.stop(signal.SIGKILL)
    a.meshdex("--node", a.node_address, "add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / "a.jsonl", {"a.md": "Written on a."}))
    failed = wait_for(lambda: _lines(a, "sync with laptop failed"), what="the failure line")
    assert failed[0].startswith("WARNING") and "unreachable" in failed[0]
    time.sleep(RETRIES_S)
    (peer,) = TrustStore(a.data_dir).all()
    assert peer.last_error  # it went on failing ...
    assert len(_lines(a, "sync with laptop failed")) == 1  # ... and said so once

    b.start()
    recovered = wait_for(lambda: _lines(a, "sync with laptop works again"), timeout_s=60,
                         what="the recovery line")
    assert recovered[0].startswith("WARNING")
