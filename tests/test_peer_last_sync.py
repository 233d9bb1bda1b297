"""A session a peer starts with this device is a sync for this device too: ``peers`` and
``status`` on a serving desktop said "last sync never" of a laptop that synced with it every
day, because only sessions the desktop started noted one. A desktop serves (real process,
real mutual TLS); a laptop that never serves joins through a real invite (read-write, and
read-only: a peer held read-only pushes nothing, so its pull is its exchange) and runs
``meshdex sync``."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from sync_support import SyncServeProcess, write_jsonl

NOBODY = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9", "--embedder-model",
          "none")  # never built: the test is about sessions, not indexes


class Laptop(SyncServeProcess):
    """A device that never serves: every session is one it starts."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "MESHDEX_SYNC_LISTEN": "", "MESHDEX_PAIR_LISTEN": ""}


@pytest.mark.parametrize("invite_flags", [(), ("--read-only",)], ids=["read-write", "read-only"])
def test_a_session_the_peer_started_is_this_devices_last_sync_too(tmp_path: Path,
                                                                   invite_flags) -> None:
    desktop = SyncServeProcess(tmp_path / "desktop")
    desktop.meshdex("init", "-c", "notes", *NOBODY)
    desktop.meshdex("add", "-c", "notes", "--jsonl",
                    write_jsonl(tmp_path / "notes.jsonl", {"a.md": "from the desktop"}))
    desktop.start()
    try:
        laptop = Laptop(tmp_path / "laptop")
        token = desktop.meshdex("invite", "--collections", "notes", *invite_flags).stdout
        laptop.meshdex("join", token.strip(), "--name", "laptop")
        [before] = json.loads(desktop.meshdex("peers", "--json").stdout)
        assert before["last_sync"] is None
        started = time.time()
        synced = laptop.meshdex("sync")
        assert "  notes: received 1" in synced.stdout, synced.stdout
        [peer] = json.loads(desktop.meshdex("peers", "--json").stdout)
        assert peer["name"] == "laptop" and peer["last_error"] is None
        assert peer["last_sync"] is not None and peer["last_sync"] >= started - 1
        status = desktop.meshdex("status").stdout
        line = next(line for line in status.splitlines() if line.startswith("  laptop ("))
        assert "last sync never" not in line and "last sync 20" in line, status
    finally:
        desktop.stop(signal.SIGKILL)
