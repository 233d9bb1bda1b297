"""Two ``meshdex serve`` processes on loopback mTLS, driven through the CLI as a user would:
pair with invite/join, add on one → searchable on the other, delete → gone on both, and a
kill -9 in the middle of a session resumes from the cursor without losing or repeating."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from meshdex.index.errors import FailedPrecondition, NotFound
from meshdex.node.cli.main import EXIT_CODES
from meshdex.node.client import MeshdexClient
from meshdex.node.records import DocumentInput
from meshdex.node.store import Store
from meshdex.sync.tls_policy import GRPC_VERBOSITY_ENV
from meshdex.sync.trust import TrustStore
from sync_support import SyncServeProcess, store_digest, wait_for


def _jsonl(path: Path, docs: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in docs.items()))
    return path


def _pair(a: SyncServeProcess, b: SyncServeProcess, *args: str) -> None:
    token = a.meshdex("invite", *args).stdout.strip()
    assert token.startswith("mdxi_")
    joined = b.meshdex("join", token)
    assert "paired with" in joined.stdout


def _applied_cursor(data_dir: Path, peer_store_id: str, collection: str) -> int:
    """How far the store in ``data_dir`` holds the log of ``peer_store_id`` (0: not yet)."""
    try:
        with Store.open(data_dir, readonly=True) as store:
            if not store.has_collection(collection):
                return 0
            return store.applied_cursor(peer_store_id, collection)
    except NotFound:
        return 0


def _hits(process: SyncServeProcess, query: str) -> list[str]:
    result = process.meshdex("--node", process.node_address, "search", query, "--json",
                             check=False)
    if result.returncode != 0:
        return []
    return [hit["document_id"] for hit in json.loads(result.stdout)["hits"]]


@pytest.mark.model
def test_add_on_one_device_is_searchable_on_the_other_and_deletes_follow(two, tmp_path):
    a, b = two
    docs = {"fruit.md": "Apples and pears grow on trees in the orchard.",
            "boats.md": "A sailing boat needs wind; a rowing boat needs oars."}
    a.meshdex("add", "--jsonl", str(_jsonl(tmp_path / "a.jsonl", docs)))
    a.start()
    b.start()
    _pair(a, b)
    wait_for(lambda: _hits(b, "what moves a sailing boat")[:1] == ["boats.md"],
             timeout_s=240, what="a's document searchable on b, ranked first")
    a.meshdex("--node", a.node_address, "add", "--jsonl",
              str(_jsonl(tmp_path / "more.jsonl",
                         {"bread.md": "Sourdough bread rises slowly overnight."})))
    wait_for(lambda: "bread.md" in _hits(b, "baking sourdough bread")[:1], timeout_s=120,
             what="a later add searchable on b")
    b.meshdex("--node", b.node_address, "rm", "fruit.md")
    wait_for(lambda: "fruit.md" not in store_digest(a.data_dir, "default")["live"],
             what="b's delete on a")
    assert store_digest(a.data_dir, "default") == store_digest(b.data_dir, "default")
    peers = json.loads(a.meshdex("peers", "--json").stdout)
    b_id = b.meshdex("id").stdout.strip()
    assert [p["device_id"] for p in peers] == [b_id]
    # b's status names b by the id a knows it by, embedded and through its node alike
    for status in (json.loads(b.meshdex("status", "--json").stdout),
                   json.loads(b.meshdex("--node", b.node_address, "status", "--json").stdout)):
        assert status["device_id"] == b_id and status["store_id"] not in ("", b_id)
    assert f"device id:   {b_id}\n" in b.meshdex("status").stdout
    assert peers[0]["last_contact"] is not None and peers[0]["last_error"] is None


def _top_hit(client: MeshdexClient, query: str) -> str | None:
    try:
        hits = client.search("default", query, top_k=1).hits
    except (FailedPrecondition, NotFound):  # no index, or no collection, here yet
        return None
    return hits[0].document_id if hits else None


@pytest.mark.model
def test_each_note_added_on_one_device_becomes_the_top_hit_on_the_other(two, tmp_path):
    """What bench_sync times, as a user sees it: B's first index holds only a couple of notes,
    and every later note reaches it by a delta build. Each must become B's single best hit for
    its own text, though B has already answered (and cached) a search for the note before."""
    a, b = two
    a.meshdex("add", "--jsonl", str(_jsonl(tmp_path / "seed.jsonl", {
        "seed": "A first note so the collection exists on both devices."})))
    a.start()
    b.start()
    _pair(a, b)
    notes = {f"note-{i}": f"Field note {i}: {words} seen at dawn." for i, words in enumerate(
        ["amber basalt cobalt", "harbor iris juniper", "obsidian prairie quartz",
         "valley willow xenon"])}
    with MeshdexClient(a.node_address) as on_a, MeshdexClient(b.node_address) as on_b:
        for doc_id, text in notes.items():
            on_a.upsert_documents("default", [DocumentInput(id=doc_id, text=text)])
            wait_for(lambda d=doc_id, t=text: _top_hit(on_b, t) == d, timeout_s=120,
                     what=f"{doc_id} to be b's top hit for its text")


def test_kill_9_mid_session_resumes_without_loss_or_duplicates(two, tmp_path):
    a, b = two
    count = 6000
    a.meshdex("init", "-c", "notes", "--embedder", "http", "--embedder-url",
              "http://127.0.0.1:9/", "--embedder-model", "none")  # never built: no model
    a.meshdex("add", "-c", "notes", "--jsonl", str(_jsonl(
        tmp_path / "many.jsonl", {f"d{i:05}": f"document {i} " + "words " * 150
                                  for i in range(count)})))
    a_id = a.meshdex("id").stdout.strip()
    with Store.open(a.data_dir, readonly=True) as store:
        a_store = store.device_id
    a.start()
    b.start()
    _pair(a, b, "--collections", "notes")
    deadline = time.monotonic() + 60
    while _applied_cursor(b.data_dir, a_store, "notes") == 0:  # tight: a session takes seconds
        assert time.monotonic() < deadline, "b never applied a first batch"
        time.sleep(0.005)
    b.stop(signal.SIGKILL)
    cut_at = _applied_cursor(b.data_dir, a_store, "notes")
    with_b = store_digest(b.data_dir, "notes")["live"]
    assert 0 < len(with_b) < count, "the session finished before it could be cut"
    b.start()
    wait_for(lambda: len(store_digest(b.data_dir, "notes")["live"]) == count, timeout_s=180,
             what="b to finish after restart")
    assert store_digest(a.data_dir, "notes") == store_digest(b.data_dir, "notes")
    with Store.open(b.data_dir, readonly=True) as store:
        applied = [c.doc_id for c in store.changes_since(0, collection="notes")]
    assert sorted(applied) == sorted(f"d{i:05}" for i in range(count))  # none applied twice
    assert _applied_cursor(b.data_dir, a_store, "notes") > cut_at
    # The session records its end after applying the last batch, so the record can trail it.
    wait_for(lambda: TrustStore(b.data_dir).get(a_id).last_sync is not None,
             what="b to record the finished session")


def _steady(output: str) -> str:
    output = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "T", output)
    return re.sub(r'"(last_contact|last_sync)": [0-9.e+]+', r'"\1": T', output)


def test_every_sync_command_works_through_the_node_with_the_same_output(two, tmp_path):
    a, b = two
    a.meshdex("init", "-c", "notes", "--embedder", "http", "--embedder-url",
              "http://127.0.0.1:9/", "--embedder-model", "none")
    a.meshdex("add", "-c", "notes", "--jsonl", str(_jsonl(tmp_path / "n.jsonl", {"n": "x"})))
    a.start()
    b.start()
    remote = ("--node", a.node_address)
    token = a.meshdex(*remote, "invite", "--collections", "notes").stdout.strip()
    assert "paired with" in b.meshdex("join", token).stdout
    wait_for(lambda: "n" in store_digest(b.data_dir, "notes")["live"], what="replication")
    for args in (["id"], ["peers"], ["peers", "--json"], ["conflicts", "--json"]):
        # contact times move on with every background session; the rest must be identical
        assert _steady(a.meshdex(*remote, *args).stdout) == _steady(a.meshdex(*args).stdout)
    status = json.loads(a.meshdex(*remote, "status", "--json").stdout)["sync"]
    assert ([p["name"] for p in status["peers"]], status["conflicts"]) == (
        [json.loads(a.meshdex("peers", "--json").stdout)[0]["name"]], 0)
    assert "peers:       1 (0 conflicts kept)" in a.meshdex("status").stdout
    sync_part = [json.loads(a.meshdex(*where, "status", "--json").stdout)["sync"]
                 for where in (remote, ())]
    assert _steady(json.dumps(sync_part[0])) == _steady(json.dumps(sync_part[1]))
    assert sync_part[0]["conflicts_by_collection"] == {"notes": 0}
    assert sync_part[0]["peers"][0]["lag"] is not None
    synced = json.loads(a.meshdex(*remote, "sync", "--json").stdout)
    assert [(r["peer"], r["error"]) for r in synced] == [(b.meshdex("id").stdout.strip(), None)]
    unknown = "P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2"
    embedded = a.meshdex("peer", "rm", unknown, check=False)
    through_node = a.meshdex(*remote, "peer", "rm", unknown, check=False)
    assert embedded.returncode == through_node.returncode == 3
    assert through_node.stderr.startswith("error: no paired peer")
    typo = a.meshdex(*remote, "peer", "rm", unknown[:-1] + "A", check=False)
    assert typo.returncode == 2 and "typo" in typo.stderr
    b_id = b.meshdex("id").stdout.strip()
    b_name = json.loads(a.meshdex("peers", "--json").stdout)[0]["name"]
    named = json.loads(a.meshdex(*remote, "sync", "--peer", b_name, "--json").stdout)
    assert [r["peer"] for r in named] == [b_id]  # the serving node resolves the name
    assert f"removed peer {b_name} ({b_id})" in a.meshdex(*remote, "peer", "rm", b_name).stdout
    assert a.meshdex("peers", "--json").stdout.strip() == "[]"


def test_a_restart_whose_port_another_socket_holds_for_a_moment_keeps_its_address(tmp_path):
    """The kernel may hand a stopped node's port to any socket (an outgoing connection's
    ephemeral port, say): the restart waits for it and serves where peers dial it."""
    node = SyncServeProcess(tmp_path / "a")
    node.meshdex("init")
    node.start()
    node.stop(signal.SIGKILL)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", node.sync_port))

    def leave_once_refused() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                "Address already in use" in line for line in node.lines):
            time.sleep(0.01)
        squatter.close()

    threading.Thread(target=leave_once_refused, daemon=True).start()
    try:
        ports = (node.sync_port, node.pair_port)
        node.start()
        assert (node.sync_port, node.pair_port) == ports
        assert any(f"127.0.0.1:{ports[0]}" in line for line in node.lines), node.lines
    finally:
        node.stop(signal.SIGKILL)
        squatter.close()


@pytest.mark.parametrize("verbosity", ["", "ERROR"])  # a user's default; what meshdex sets
@pytest.mark.parametrize("taken", ["listen", "sync", "pairing"])
def test_serve_on_a_port_in_use_fails_in_one_line_naming_the_setting(tmp_path, taken, verbosity):
    """Before, grpcio's RuntimeError from binding came out as a traceback (exit 1); then gRPC
    core's own "E... add_port.cc] Failed to add port to server" line came before meshdex's."""
    node = SyncServeProcess(tmp_path / "a")
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    listen = {"listen": port}.get(taken, 0)
    if taken == "sync":
        node.sync_port = port
    if taken == "pairing":
        node.pair_port = port
    env = {**node.env, GRPC_VERBOSITY_ENV: verbosity}
    try:
        result = subprocess.run([*node.launcher, "serve", "--listen", f"127.0.0.1:{listen}"],
                                capture_output=True, text=True, env=env, timeout=120)
    finally:
        squatter.close()
    setting = {"listen": "listen (--listen)", "sync": "sync_listen (--sync-listen",
               "pairing": "pair_listen (--pair-listen"}[taken]
    assert result.returncode == EXIT_CODES[FailedPrecondition], result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port} ({setting}"), line
    assert "Address already in use" in line and " hint: " in line


def test_serve_with_the_sync_listener_off_says_it_only_dials_out(tmp_path: Path) -> None:
    """The banner read 'meshdex sync on off (pairing ...)'."""
    serve = SyncServeProcess(tmp_path / "data")
    process = subprocess.Popen([*serve.launcher, "serve", "--listen", "127.0.0.1:0",
                                "--sync-listen", ""],
                               stderr=subprocess.PIPE, text=True, env=serve.env)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        banner = next(line for line in lines if line.startswith("meshdex sync"))
        assert banner.startswith("meshdex sync not listening (sessions to peers dial out) "
                                 f"(pairing 127.0.0.1:{serve.pair_port}); device "), banner
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
