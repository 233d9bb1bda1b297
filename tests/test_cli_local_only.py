"""Where a command acts: a command that works only on this device refuses ``--node`` instead of
answering from the local data directory, and a command with nothing to do in an empty store
refuses a mistyped ``--data-dir`` instead of creating a store there.

Real CLI subprocesses, a real gRPC node for ``--node``, real LMDB stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from grpc_support import started_node
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.main import EXIT_CODES
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node


def meshdex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshdex", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _store_with_notes(data_dir: Path) -> Path:
    with Node.open(data_dir) as node:
        node.create_collection("notes")
        node.upsert_documents("notes", [DocumentInput(id="a", text="Reef the mainsail early.")])
    return data_dir


def _files(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``data_dir`` with its size and modification time."""
    return {str(path.relative_to(data_dir)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in data_dir.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def node_address(tmp_path_factory) -> str:
    """A node serving a store of its own, which a command given --node must not confuse with
    the local data directory."""
    served = _store_with_notes(tmp_path_factory.mktemp("served"))
    with started_node(served) as server:
        yield server.address


LOCAL_ONLY_COMMANDS = [
    ["stats", "-c", "notes"],
    ["bundle", "export", "-c", "notes", "exported.leann"],
    ["bundle", "import", "exported.leann"],
    ["token", "list"],
    ["token", "create", "--scope", "read"],
    ["config", "show"],
    ["demo", "--query", "sails"],
]


@pytest.mark.parametrize("command", LOCAL_ONLY_COMMANDS, ids=" ".join)
def test_a_command_that_works_only_here_refuses_node(tmp_path, node_address, command):
    local = _store_with_notes(tmp_path / "local")
    before = _files(local)
    result = subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(local), "--node", node_address,
         *command], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == EXIT_CODES[InvalidArgument], result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "without --node" in lines[0]
    assert _files(local) == before
    assert not (tmp_path / "exported.leann").exists()


NEEDS_A_STORE = [
    ["compact"],
    ["pin", "-c", "notes", "--filter", "lang=en"],
    ["build", "-c", "notes"],
    ["token", "create", "--scope", "read"],
    ["rm", "notes/a.md"],
]


@pytest.mark.parametrize("command", NEEDS_A_STORE, ids=" ".join)
@pytest.mark.parametrize("typo", ["absent", "empty"])
def test_a_mistyped_data_dir_is_refused_as_status_refuses_it(tmp_path, command, typo):
    data_dir = tmp_path / "meshdx"
    if typo == "empty":
        data_dir.mkdir()
    status = meshdex("--data-dir", str(data_dir), "status")
    result = meshdex("--data-dir", str(data_dir), *command)
    assert status.returncode != 0 and status.stderr.startswith("error: no meshdex store in")
    assert (result.returncode, result.stderr) == (status.returncode, status.stderr)
    if typo == "absent":
        assert not data_dir.exists()
    else:
        assert list(data_dir.iterdir()) == []
