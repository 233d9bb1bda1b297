"""``meshdex serve`` as a real subprocess, ``token``/``config`` commands, and CLI remote mode.

The shutdown test writes through gRPC while SIGTERM arrives, then reopens the store and checks
that every write the server acknowledged is there.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import click
import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_support import ServeProcess
from meshdex.index.errors import MeshdexError
from meshdex.node.auth import TokenStore
from meshdex.node.cli.main import cli
from meshdex.node.cli.remote import open_node
from meshdex.node.client import MeshdexClient
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node


def test_sigterm_loses_no_acknowledged_write(tmp_path):
    _, token = TokenStore(tmp_path).create("write")
    with Node.open(tmp_path) as node:
        node.create_collection("docs")
    serve = ServeProcess(tmp_path, "--grace-period-s", "5")
    acknowledged: list[str] = []
    failures: list[Exception] = []

    def write_until_refused() -> None:
        with MeshdexClient(serve.address, token=token,
                           deadlines_s={"Upsert": 5, "default": 5}) as client:
            for i in range(100_000):
                doc = DocumentInput(id=f"doc-{i}", text=f"acknowledged write number {i}")
                try:
                    client.upsert_documents("docs", [doc])
                except MeshdexError as error:
                    failures.append(error)
                    return
                acknowledged.append(doc.id)

    writer = threading.Thread(target=write_until_refused)
    writer.start()
    while len(acknowledged) < 20 and writer.is_alive():
        time.sleep(0.01)
    assert serve.stop(signal.SIGTERM) == 0, "".join(serve.stderr_lines)
    writer.join(30)
    # refused after shutdown (cancelled while stopping, unavailable once stopped), not hung
    assert failures and failures[0].recoverable, failures
    assert "stopped" in "".join(serve.stderr_lines)

    with Node.open(tmp_path) as node:  # the writer lock was released: the store closed
        stored = {doc_id for doc_id in acknowledged
                  if node.get_document("docs", doc_id).text.endswith(doc_id.split("-")[1])}
    assert len(acknowledged) >= 20
    assert stored == set(acknowledged)


def test_sigterm_delivered_to_a_server_thread_stops_serve(tmp_path):
    """The kernel hands a process-directed SIGTERM to any thread; Python runs the handler on
    the main thread only once that thread wakes. A main thread asleep without a timeout never
    woke (CI: serve still running 20 s after SIGTERM, no 'received SIGTERM' line)."""
    serve = ServeProcess(tmp_path)
    assert serve.stop(signal.SIGTERM, to_a_thread=True) == 0
    assert any("received SIGTERM" in line for line in serve.stderr_lines)


def test_serve_reports_health_and_stops_on_sigint(tmp_path):
    serve = ServeProcess(tmp_path)
    with grpc.insecure_channel(serve.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert any("no tokens exist yet" in line for line in serve.stderr_lines)
    assert serve.stop(signal.SIGINT) == 0


def test_serve_refuses_plaintext_beyond_loopback(tmp_path):
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "serve",
                                      "--listen", "0.0.0.0:7710"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0:7710 without TLS" in result.output


def test_token_commands_create_list_and_revoke(tmp_path):
    Node.open(tmp_path).close()
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "token"]
    created = runner.invoke(cli, [*base, "create", "--scope", "read", "--label", "laptop",
                                  "--json"])
    assert created.exit_code == 0, created.output
    token = json.loads(created.output)
    assert token["token"].startswith("mdx_") and token["scope"] == "read"
    assert TokenStore(tmp_path).check(token["token"]).scope == "read"

    listed = runner.invoke(cli, [*base, "list", "--json"])
    assert json.loads(listed.output) == [{"token_id": token["token_id"], "scope": "read",
                                          "label": "laptop",
                                          "created_at": json.loads(listed.output)[0][
                                              "created_at"]}]
    assert token["token"] not in listed.output

    revoked = runner.invoke(cli, [*base, "revoke", token["token_id"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    again = runner.invoke(cli, [*base, "revoke", token["token_id"]])
    assert again.exit_code == 3 and again.output.startswith("error: no token")
    bad_scope = runner.invoke(cli, [*base, "create", "--scope", "root"])
    assert bad_scope.exit_code != 0 and "root" in bad_scope.output


def test_config_show_reports_values_and_sources(tmp_path):
    config_file = tmp_path / "node.toml"
    config_file.write_text('[node]\nmax_concurrent_rpcs = 7\n')
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "config", "show", "--config", str(config_file),
              "--json"], env={"MESHDEX_LISTEN": "127.0.0.1:9999"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["max_concurrent_rpcs"] == {"value": 7, "source": str(config_file)}
    assert shown["listen"] == {"value": "127.0.0.1:9999", "source": "MESHDEX_LISTEN"}
    assert shown["data_dir"]["value"] == str(tmp_path)
    text = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "config", "show"])
    assert "grace_period_s" in text.output and "# default" in text.output


@click.command("probe")
@click.pass_context
def probe(ctx: click.Context) -> None:
    """Prints what ``open_node`` yields, as a command written against it would."""
    with open_node(ctx, readonly=True) as node:
        click.echo(json.dumps([info.to_dict() for info in node.list_collections()]))
        click.echo(json.dumps(node.get_document("docs", "a").to_dict()))


@pytest.fixture
def cli_with_probe():
    cli.add_command(probe)
    yield cli
    cli.commands.pop("probe")


def test_remote_mode_gives_the_same_output_as_embedded(tmp_path, cli_with_probe):
    with Node.open(tmp_path) as node:
        node.create_collection("docs")
        node.upsert_documents("docs", [DocumentInput(id="a", text="alpha", metadata={"k": 1})])
    runner = CliRunner()
    embedded = runner.invoke(cli_with_probe, ["--data-dir", str(tmp_path), "probe"])
    assert embedded.exit_code == 0, embedded.output
    _, token = TokenStore(tmp_path).create("read")
    serve = ServeProcess(tmp_path)
    try:
        remote = runner.invoke(cli_with_probe, ["--node", serve.address, "--token", token,
                                                "probe"])
        unauthenticated = runner.invoke(cli_with_probe, ["--node", serve.address, "probe"])
    finally:
        serve.stop()
    assert remote.exit_code == 0, remote.output
    assert remote.output == embedded.output
    assert unauthenticated.exit_code == 7
    assert unauthenticated.output.startswith("error: ListCollections needs a bearer token")


@pytest.mark.parametrize("path", [["serve"], ["token"], ["token", "create"], ["token", "list"],
                                  ["token", "revoke"], ["config"], ["config", "show"]],
                         ids=" ".join)
def test_every_node_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


@pytest.mark.model
def test_cli_search_through_a_node_prints_what_embedded_search_prints(tmp_path, real_embedder):
    with Node.open(tmp_path) as node:
        node.create_collection("notes")
        node.upsert_documents("notes", [
            DocumentInput(id="sail", text="Reef the mainsail before the wind gets too strong."),
            DocumentInput(id="bread", text="Knead the bread dough until it is smooth."),
            DocumentInput(id="stars", text="The telescope showed the rings of Saturn."),
        ])
        node.build("notes")
    search = ["search", "-c", "notes", "-k", "2", "what should I do when it gets windy?"]

    def meshdex(*args: str) -> str:  # the real console entry point, as a user runs it
        result = subprocess.run([sys.executable, "-m", "meshdex", *args], capture_output=True,
                                text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr
        return re.sub(r", \d+ ms\)", ")", result.stdout)  # timings differ, nothing else may

    embedded = meshdex("--data-dir", str(tmp_path), *search)
    # The embedded search saved what it recomputed; start the remote one as cold, so the
    # cost line compares like with like.
    (tmp_path / "indexes" / "notes.learned-cache").unlink()
    _, token = TokenStore(tmp_path).create("read")
    serve = ServeProcess(tmp_path)
    try:
        remote = meshdex("--node", serve.address, "--token", token, *search)
    finally:
        serve.stop()
    assert remote == embedded
    assert remote.splitlines()[1].startswith("  1. sail  (cosine 0.")


def test_document_commands_work_through_a_node_like_embedded(tmp_path):
    """add, list, rm and status reach the node with --node and print what embedded prints."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("Reef the mainsail early.")
    (notes / "b.txt").write_text("Knead the dough.")
    embedded_dir, served_dir = tmp_path / "embedded", tmp_path / "served"
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    with Node.open(served_dir):
        pass
    _, token = TokenStore(served_dir).create("admin")
    serve = ServeProcess(served_dir)
    try:
        remote = ["--node", serve.address, "--token", token]
        outputs = [
            (run("--data-dir", str(embedded_dir), *command), run(*remote, *command))
            for command in (["add", str(notes)], ["list"], ["rm", "notes/b.txt"])
        ]
        remote_status = run(*remote, "status", "--json")
    finally:
        serve.stop()
    for embedded, served in outputs:
        assert served == embedded
    assert json.loads(remote_status)["collections"][0]["document_count"] == 1


@pytest.mark.parametrize("address", ["garbage", "host:port", "127.0.0.1:"])
def test_a_malformed_node_address_is_named_as_the_node_address(address):
    """``--node garbage`` answered "listen address 'garbage' is not HOST:PORT", the wording of
    a serve setting, though the user gave no listen address."""
    result = CliRunner().invoke(cli, ["--node", address, "status"])
    assert result.exit_code == 2, result.output
    assert f"node address {address!r} is not HOST:PORT" in result.output
    assert "listen" not in result.output


def test_token_revoke_takes_the_whole_token_and_never_repeats_its_secret(tmp_path):
    """Pasting a leaked token whole answered "no token with id 'mdx_..._SECRET'", printing the
    secret again (into a terminal's scrollback or a CI log); the token is now revoked."""
    Node.open(tmp_path).close()
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "token"]
    token = json.loads(runner.invoke(cli, [*base, "create", "--scope", "write", "--json"])
                       .output)
    secret = token["token"].split("_", 2)[2]
    revoked = runner.invoke(cli, [*base, "revoke", token["token"]])
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked token {token['token_id']} (write)" in revoked.output
    assert TokenStore(tmp_path).is_empty()
    again = runner.invoke(cli, [*base, "revoke", token["token"]])
    assert again.exit_code == 3, again.output
    assert secret not in again.output and token["token_id"] in again.output
