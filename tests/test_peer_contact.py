"""The peers ``meshdex peers`` lists: who they are and when they were last reached.

``last contact`` is when the peer was last reached, not last tried: every failed dial moved it
forward, so a device that had been down for days showed a contact a minute ago next to its
"connection refused". And this device is never one of its own peers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer


def _dead_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


def test_a_peer_never_reached_shows_no_contact_after_failed_syncs(tmp_path: Path) -> None:
    data_dir = tmp_path / "desktop"
    assert meshdex(data_dir, "init").returncode == 0
    assert meshdex(data_dir, "id").returncode == 0  # this device's identity
    laptop = load_identity(tmp_path / "laptop")
    TrustStore(data_dir).add(make_peer(cert_pem=laptop.cert_pem.decode(), name="laptop",
                                       addresses=[_dead_address()], collections=["default"],
                                       mode="read-write"))
    for _ in range(2):
        failed = meshdex(data_dir, "sync")
        assert failed.returncode == 12, failed.stderr
    [peer] = json.loads(meshdex(data_dir, "peers", "--json").stdout)
    assert peer["last_error"] and "laptop" in peer["name"]
    assert peer["last_contact"] is None, "a failed dial counted as a contact"
    assert peer["last_sync"] is None


def test_peer_add_refuses_this_devices_own_id(tmp_path: Path) -> None:
    """``peer add $(meshdex id) ADDRESS`` paired the device with itself (join refused it): it
    then listed itself in ``peers`` and synced with itself."""
    data_dir = tmp_path / "desktop"
    assert meshdex(data_dir, "init").returncode == 0
    own = json.loads(meshdex(data_dir, "id", "--json").stdout)["device_id"]
    added = meshdex(data_dir, "peer", "add", own, _dead_address())
    assert added.returncode == 2, added.stderr
    assert "a device cannot pair with itself" in added.stderr
    assert json.loads(meshdex(data_dir, "peers", "--json").stdout) == []
