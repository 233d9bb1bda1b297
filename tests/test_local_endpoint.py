"""This device's own commands beside its running node (``meshdex.node.local_endpoint``): a real
``meshdex serve`` process holds the data directory, and plain ``meshdex add``, ``build``,
``rm``, ``compact`` and ``sync`` (no ``--node``, no token created) go through it instead of
failing with "another process is writing", and ``search`` to use its loaded model. Clients
elsewhere still need a token, and a file left by a node that is gone, or naming a process that
is not the lock's holder, is ignored."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_support import ServeProcess
from lock_support import writer_lock_held
from meshdex.index.errors import Unauthenticated
from meshdex.node.cli.remote import WRITE_PROBE_S
from meshdex.node.client import MeshdexClient
from meshdex.node.local_endpoint import (
    ENDPOINT_FILE_NAME,
    SOCKET_FILE_NAME,
    TOKEN_FILE_NAME,
    LocalEndpoint,
    publish,
    running_endpoint,
)
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import READ_WRITE, TrustStore, make_peer
from sync_support import SyncServeProcess, store_digest, wait_for, write_jsonl


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "backups.md").write_text("The backup job runs nightly and keeps 30 days.\n")
    (folder / "ports.md").write_text("EADDRINUSE means another process holds the port.\n")
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory holding an empty "notes" collection."""
    path = tmp_path / "data"
    ok(meshdex(path, "init", "-c", "notes"))
    return path


@pytest.fixture
def serving(data_dir: Path) -> Iterator[ServeProcess]:
    """``meshdex serve`` on ``data_dir``; a test may stop it itself to look at what follows."""
    serve = ServeProcess(data_dir)
    yield serve
    if serve.process.poll() is None:
        assert serve.stop() == 0


@pytest.mark.model
def test_writing_commands_beside_a_serving_node_go_through_it(data_dir, serving, notes) -> None:
    assert "added 2" in ok(meshdex(data_dir, "add", str(notes), "-c", "notes"))
    assert "built generation 1" in ok(meshdex(data_dir, "build", "-c", "notes"))
    found = meshdex(data_dir, "-v", "search", "-c", "notes", "port already in use", "-k", "1")
    assert "ports.md" in ok(found)
    assert f"going through it at unix:{data_dir / SOCKET_FILE_NAME}" in found.stderr, (
        "a search uses the serving node's loaded model")
    assert "deleted 1" in ok(meshdex(data_dir, "rm", "-c", "notes", "notes/backups.md"))
    compacted = json.loads(ok(meshdex(data_dir, "compact", "--json")))
    assert compacted["tombstones_dropped"] == 1  # paired with no device
    assert json.loads(ok(meshdex(data_dir, "sync", "--json"))) == []  # no peers yet
    listed = json.loads(ok(meshdex(data_dir, "list", "--json")))
    assert [(c["name"], c["document_count"]) for c in listed] == [("notes", 1)]
    # the node's own token is no token of the file, and others still need one
    assert json.loads(ok(meshdex(data_dir, "token", "list", "--json"))) == []
    with MeshdexClient(serving.address) as stranger, pytest.raises(Unauthenticated):
        stranger.list_collections()
    assert serving.stop() == 0
    assert not (data_dir / ENDPOINT_FILE_NAME).exists()
    assert not (data_dir / SOCKET_FILE_NAME).exists()


def test_an_error_through_the_serving_node_exits_as_the_embedded_command(
        data_dir, serving) -> None:
    through_node = meshdex(data_dir, "rm", "-c", "nosuch", "doc")
    assert serving.stop() == 0
    embedded = meshdex(data_dir, "rm", "-c", "nosuch", "doc")
    assert through_node.returncode == embedded.returncode == 3
    assert through_node.stderr == embedded.stderr


def test_the_endpoint_is_private_answers_its_token_only_and_a_killed_nodes_is_ignored(
        data_dir, serving, notes) -> None:
    endpoint_file, socket_file = data_dir / ENDPOINT_FILE_NAME, data_dir / SOCKET_FILE_NAME
    assert stat.S_IMODE(endpoint_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / TOKEN_FILE_NAME).stat().st_mode) == 0o600
    assert stat.S_ISSOCK(socket_file.stat().st_mode)
    assert stat.S_IMODE(socket_file.stat().st_mode) == 0o600
    endpoint = running_endpoint(data_dir)
    assert endpoint is not None and endpoint.pid == serving.process.pid
    assert endpoint.address == f"unix:{socket_file}"
    with MeshdexClient(endpoint.address, token=endpoint.token) as own:
        assert [c.name for c in own.list_collections()] == ["notes"]
    with (MeshdexClient(endpoint.address, token=endpoint.token + "x") as guess,
          pytest.raises(Unauthenticated)):
        guess.list_collections()
    serving.stop(signal.SIGKILL)
    assert endpoint_file.exists(), "a node killed with -9 cannot withdraw it"
    assert running_endpoint(data_dir) is None
    assert "added 2" in ok(meshdex(data_dir, "add", str(notes), "-c", "notes"))  # embedded
    restarted = ServeProcess(data_dir)
    try:  # a long-running client (meshdex mcp) outlives a restart of the node
        with MeshdexClient(endpoint.address, token=endpoint.token) as own:
            assert [c.document_count for c in own.list_collections()] == [2]
    finally:
        assert restarted.stop() == 0


def test_a_stuck_node_leaves_reading_commands_reading_the_store(data_dir, serving) -> None:
    os.kill(serving.process.pid, signal.SIGSTOP)
    try:
        listed = meshdex(data_dir, "list", "--json")
        assert [c["name"] for c in json.loads(ok(listed))] == ["notes"]
        assert "the serving node does not answer (DEADLINE_EXCEEDED)" in listed.stderr
    finally:
        os.kill(serving.process.pid, signal.SIGCONT)


def test_a_stuck_node_leaves_the_sync_commands_that_read_reading_the_files(tmp_path) -> None:
    """``id``, ``peers`` and ``conflicts`` beside a serve stopped with SIGSTOP waited 10 s for
    its health check and failed (exit 5): they need nothing from it."""
    node = SyncServeProcess(tmp_path / "a")
    node.meshdex("init", "-c", "notes")
    node.start()
    device_id = node.meshdex("id").stdout.strip()
    peer = TrustStore(node.data_dir).add(make_peer(
        cert_pem=load_identity(tmp_path / "other").cert_pem.decode(), name="desktop",
        addresses=["127.0.0.1:9"], collections=["notes"], mode=READ_WRITE))
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        answers = {}
        for command in (("id",), ("peers", "--json"), ("conflicts", "--json")):
            started = time.monotonic()
            answers[command[0]] = ok(node.meshdex(*command, check=False, timeout_s=60))
            assert time.monotonic() - started < WRITE_PROBE_S, command  # no probe
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
        node.stop()
    assert answers["id"] == f"{device_id}\n"
    [listed] = json.loads(answers["peers"])
    assert (listed["device_id"], listed["name"], listed["lag"]) == (peer.device_id, "desktop", 0)
    assert json.loads(answers["conflicts"]) == []


def test_a_stuck_node_fails_writing_commands_soon_and_says_how_to_go_on(
        data_dir, serving, notes) -> None:
    """A writing command cannot read around the node: it failed after gRPC's handshake
    timeout as "node unavailable ... check that `meshdex serve` runs" (exit 1), which it
    does; now it fails after the health check with the lock error's exit code, naming the
    node and how to resume it, and what was written before and after is intact."""
    ok(meshdex(data_dir, "add", str(notes / "backups.md"), "-c", "notes"))
    pid = serving.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        refused = meshdex(data_dir, "add", str(notes / "ports.md"), "-c", "notes")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert refused.returncode == 5, refused.stderr  # as the lock error: failed precondition
    assert f"`meshdex serve` (pid {pid}) holds the data directory and does not answer" \
        in refused.stderr
    assert f"kill -CONT {pid}" in refused.stderr
    ok(meshdex(data_dir, "add", str(notes / "ports.md"), "-c", "notes"))
    listed = json.loads(ok(meshdex(data_dir, "list", "--json")))
    assert listed[0]["document_count"] == 2


def test_a_lock_held_by_another_process_is_refused_whatever_the_endpoint_file_says(
        data_dir, notes) -> None:
    with writer_lock_held(data_dir) as holder:
        # a live process, but not the one holding the lock (e.g. a node that stopped)
        publish(data_dir, LocalEndpoint(pid=os.getpid(), address="127.0.0.1:9", token="t"))
        refused = meshdex(data_dir, "add", str(notes), "-c", "notes")
        assert refused.returncode == 5
        assert f"another process (pid {holder.pid}) is writing" in refused.stderr
        # the holder's pid, but it does not serve: the command says so instead of writing
        publish(data_dir, LocalEndpoint(pid=holder.pid, address="127.0.0.1:9", token="t"))
        for command in (("add", str(notes), "-c", "notes"), ("sync",)):
            unreachable = meshdex(data_dir, *command)
            assert unreachable.returncode == 5, unreachable.stderr
            assert "does not answer at 127.0.0.1:9 (UNAVAILABLE" in unreachable.stderr


def test_pairing_adding_and_syncing_beside_two_serving_nodes_need_no_node_option(
        two, tmp_path) -> None:
    a, b = two
    a.start()
    b.start()
    token = a.meshdex("invite", "--collections", "notes").stdout.strip()
    assert "paired with" in b.meshdex("join", token).stdout
    added = a.meshdex("add", "-c", "notes", "--jsonl",
                      write_jsonl(tmp_path / "notes.jsonl", {"n1": "a note written on a"}))
    assert "added 1" in added.stdout
    [report] = json.loads(a.meshdex("sync", "--json").stdout)
    assert report["error"] is None, report
    wait_for(lambda: [text for text, _ in store_digest(b.data_dir, "notes")["live"].values()]
             == ["a note written on a"], what="the note on b")
    a.meshdex("rm", "-c", "notes", "n1")
    b.meshdex("sync")
    wait_for(lambda: store_digest(b.data_dir, "notes")["live"] == {}, what="the delete on b")


def test_commands_that_need_the_data_directory_to_themselves_say_what_to_do_instead(
        data_dir, serving, notes) -> None:
    held = f"`meshdex serve` (pid {serving.process.pid}) holds the data directory {data_dir}"
    watch = meshdex(data_dir, "watch", str(notes), "-c", "notes", "--once")
    assert watch.returncode == 5 and held in watch.stderr, watch.stderr
    assert f'add "notes={notes}" to `watch` under [node]' in watch.stderr
    demo = meshdex(data_dir, "demo")
    assert demo.returncode == 5 and "--data-dir /tmp/meshdex-demo demo" in demo.stderr
    imported = meshdex(data_dir, "bundle", "import", str(notes / "ports.md"))
    assert imported.returncode == 5 and "stop the node, import" in imported.stderr


def test_a_data_directory_too_deep_for_a_unix_socket_is_reached_on_the_loopback_port(
        tmp_path, notes) -> None:
    data_dir = tmp_path / ("deep-" * 20) / "data"
    assert len(os.fsencode(data_dir / SOCKET_FILE_NAME)) > 108
    ok(meshdex(data_dir, "init", "-c", "notes"))
    serve = ServeProcess(data_dir)
    try:
        endpoint = running_endpoint(data_dir)
        assert endpoint is not None and endpoint.address == serve.address
        assert not (data_dir / SOCKET_FILE_NAME).exists()
        assert "added 2" in ok(meshdex(data_dir, "add", str(notes), "-c", "notes"))
    finally:
        assert serve.stop() == 0
