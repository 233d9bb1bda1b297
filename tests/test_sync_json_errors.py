"""With --json every outcome of a sync command is JSON on stdout, errors included: ``meshdex
sync --peer nobody --json`` printed nothing on stdout and a plain-text line on stderr, so a
script parsing stdout failed on empty input. Now stdout holds ``{"ok": false, "error": ...,
"error_kind": ..., "hint": ...}`` (the shape of ``bundle verify --json``) while stderr keeps
its one line and the exit code stays the error's. Real CLI subprocesses on a data directory
whose peers are real certificates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer
from sync_support import free_port


def _meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture
def paired(tmp_path: Path) -> Path:
    """A data directory paired with two devices both called "laptop" (a peers file from
    before pairing refused a taken name)."""
    data_dir = tmp_path / "here"
    assert _meshdex(data_dir, "init").returncode == 0
    for index in range(2):
        identity = load_identity(tmp_path / f"device-{index}")
        TrustStore(data_dir).add(make_peer(
            cert_pem=identity.cert_pem.decode(), name=f"laptop-{index}",
            addresses=[f"127.0.0.1:{free_port()}"], collections=["default"],
            mode="read-write"))
    peers_file = TrustStore(data_dir).path
    peers_file.write_text(peers_file.read_text().replace("laptop-0", "laptop")
                          .replace("laptop-1", "laptop"))
    return data_dir


@pytest.mark.parametrize(("args", "corrupt", "code", "kind", "words"), [
    (("sync", "--peer", "nobody", "--json"), False, 3, "PeerNotFound",
     "no paired peer has the id or name 'nobody'"),
    (("sync", "--peer", "laptop", "--json"), False, 2, "InvalidArgument",
     "2 paired peers are called 'laptop'"),
    (("sync", "--json"), True, 5, "TrustStoreCorrupt", "cannot read the peers file"),
    (("peers", "--json"), True, 5, "TrustStoreCorrupt", "cannot read the peers file"),
], ids=["unknown-peer", "ambiguous-peer", "sync-corrupt-peers", "peers-corrupt-peers"])
def test_a_failed_sync_command_with_json_prints_its_error_as_json_and_exits_its_code(
        paired: Path, args, corrupt, code, kind, words) -> None:
    if corrupt:
        TrustStore(paired).path.write_text("{not json")
    result = _meshdex(paired, *args)
    assert result.returncode == code, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == {"ok", "error", "error_kind", "hint"}
    assert printed["ok"] is False and printed["error_kind"] == kind and words in printed["error"]
    assert result.stderr.startswith(f"error: {printed['error']}")
    assert "Traceback" not in result.stderr
