"""``meshdex mcp``: the SDK's own clients against a real ``meshdex mcp`` subprocess.

stdio (embedded and ``--node``) and streamable HTTP, over a data directory built with the real
model; answers are checked against ``meshdex search`` / the store. The bounds on result size are
table tests on ``McpTools`` with a small node double (the mechanics under test).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_support import BackgroundProcess, server_env
from meshdex.index.engine import SearchStats
from meshdex.index.errors import InvalidArgument
from meshdex.node.auth import TokenStore
from meshdex.node.cli.main import cli
from meshdex.node.mcp_http import BearerTokenGate
from meshdex.node.mcp_server import (
    MAX_PASSAGE_CHARS,
    MAX_RESULT_CHARS,
    MAX_TOP_K,
    McpTools,
)
from meshdex.node.records import Document, DocumentInput, PassageHit, SearchResults
from meshdex.node.service import Node
from meshdex.node.validation import MAX_TOP_K as NODE_MAX_TOP_K

pytestmark = pytest.mark.model

CORPUS = {
    "garden/tomatoes.md": "Tomatoes need full sun, deep watering twice a week and a stake to "
    "climb. Pinch the side shoots so the plant puts its energy into fruit.",
    "garden/compost.md": "A compost heap wants a mix of green kitchen scraps and brown dry "
    "leaves, turned every few weeks so air reaches the middle.",
    "code/backups.md": "Nightly backups run with restic to the NAS; the retention policy keeps "
    "seven daily and four weekly snapshots. Restore with restic restore latest.",
    "code/logs.md": "Rotate the application logs with logrotate: daily, compress, keep 14, "
    "and send SIGHUP to the service afterwards so it reopens its log file.",
    "travel/lisbon.md": "In Lisbon take tram 28 early in the morning before the crowds, and eat "
    "pasteis de nata at the bakery in Belem.",
}
QUERY = "how do I rotate log files?"
READ_TOOLS = {"search", "list_collections", "get_document", "status"}


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory, real_embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("mcp") / "data"
    with Node.open(data_dir) as node:
        node.upsert_documents("notes", [
            DocumentInput(id=doc_id, text=text, source=f"/home/me/{doc_id}",
                          metadata={"topic": doc_id.split("/")[0]})
            for doc_id, text in CORPUS.items()
        ], create_missing=True)
        node.build("notes")
    return data_dir


@pytest.fixture
def data_copy(built_dir: Path, tmp_path: Path) -> Path:
    """A private copy for tests that write or serve (the module's directory stays pristine)."""
    copy = tmp_path / "data"
    shutil.copytree(built_dir, copy)
    return copy


def _stdio(data_dir: Path, env: dict[str, str], *global_args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "meshdex", "--data-dir", str(data_dir), *global_args, "mcp"],
        env={**os.environ, **env},
    )


def _structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def _cli_search(data_dir: Path) -> dict[str, Any]:
    out = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "search", "-c", "notes", QUERY,
                                   "--top-k", "3", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def _same_hits(mcp_answer: dict[str, Any], cli_answer: dict[str, Any]) -> None:
    got = [(hit["document_id"], hit["source"], hit["passage"], hit["score"], hit["bm25"])
           for hit in mcp_answer["hits"]]
    expected = [(hit["document_id"], hit["source"], hit["passage"], round(hit["score"], 6),
                 None if hit["bm25"] is None else round(hit["bm25"], 6))
                for hit in cli_answer["hits"]]
    assert got == expected
    # A recomputed cosine may differ in its fourth decimal (bf16, another batch); a held one not.
    assert [hit["similarity"] for hit in mcp_answer["hits"]] == [
        None if hit["similarity"] is None else pytest.approx(hit["similarity"], abs=1e-3)
        for hit in cli_answer["hits"]]
    assert any(hit["similarity"] is not None for hit in mcp_answer["hits"])


async def _search_session(params: Any) -> dict[str, Any]:
    async with Client(params) as client:
        return _structured(await client.call_tool(
            "search", {"collection": "notes", "query": QUERY, "top_k": 3}))


def test_stdio_tools_answer_like_meshdex_search(built_dir: Path, tmp_path: Path) -> None:
    async def session() -> dict[str, Any]:
        async with Client(_stdio(built_dir, server_env(tmp_path))) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            search = _structured(await client.call_tool(
                "search", {"collection": "notes", "query": QUERY, "top_k": 3}))
            document = _structured(await client.call_tool(
                "get_document", {"collection": "notes",
                                 "document_id": search["hits"][0]["document_id"]}))
            collections = _structured(await client.call_tool("list_collections", {}))
            status = _structured(await client.call_tool("status", {}))
            write = await client.call_tool("add_documents", {
                "collection": "notes", "documents": [{"id": "x", "text": "sneaky"}]})
            missing = await client.call_tool("get_document", {"collection": "notes",
                                                              "document_id": "nope.md"})
            return {"tools": tools, "search": search, "document": document,
                    "collections": collections, "status": status, "write": write,
                    "missing": missing}

    answers = anyio.run(session)
    assert set(answers["tools"]) == READ_TOOLS
    assert "top_k" in answers["tools"]["search"].description
    _same_hits(answers["search"], _cli_search(built_dir))
    assert answers["search"]["hits"][0]["document_id"] == "code/logs.md"
    assert answers["search"]["cost"]["model_calls"] >= 1
    assert answers["search"]["truncated"] is False
    assert answers["document"]["text"] == CORPUS["code/logs.md"]
    assert answers["document"]["source"] == "/home/me/code/logs.md"
    [notes] = answers["collections"]["collections"]
    assert (notes["name"], notes["document_count"]) == ("notes", len(CORPUS))
    assert answers["status"]["collections"][0]["name"] == "notes"
    assert answers["write"].is_error  # not offered while writes are off
    assert answers["missing"].is_error
    assert "nope.md" in answers["missing"].content[0].text
    with Node.open(built_dir, readonly=True) as node:
        assert node.get_collection("notes").document_count == len(CORPUS)


def test_stdio_answers_every_request_read_before_stdin_closed(built_dir: Path,
                                                             tmp_path: Path) -> None:
    """``meshdex mcp < requests.jsonl``: the SDK's loop cancelled the search still running at
    EOF and printed no answer for it."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "a script", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "search", "arguments": {"collection": "notes", "query": QUERY,
                                                    "top_k": 3}}},
    ]
    piped = tmp_path / "requests.jsonl"
    piped.write_text("".join(json.dumps(request) + "\n" for request in requests))
    with piped.open() as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "meshdex", "--data-dir", str(built_dir), "mcp"], stdin=stdin,
            capture_output=True, text=True, timeout=120, env={**os.environ, **server_env(tmp_path)})
    assert done.returncode == 0, done.stderr
    answers = {answer["id"]: answer for answer in map(json.loads, done.stdout.splitlines())}
    assert sorted(answers) == [1, 2]
    found = json.loads(answers[2]["result"]["content"][0]["text"])
    _same_hits(found, _cli_search(built_dir))


def test_stdio_answers_every_request_when_the_client_reads_slowly(built_dir: Path,
                                                                  tmp_path: Path) -> None:
    """Answers fill the stdout pipe while the client is not reading: at stdin's end the
    server counted an answer as given once it was handed on, not written, so the session
    closed and cancelled the rest; 40 tools/list gave 18 answers."""
    lines = [{"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "a slow reader", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines += [{"jsonrpc": "2.0", "id": n, "method": "tools/list"} for n in range(1, 41)]
    server = subprocess.Popen(
        [sys.executable, "-m", "meshdex", "--data-dir", str(built_dir), "mcp"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **server_env(tmp_path)})
    server.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
    server.stdin.close()
    time.sleep(3)  # the answers (about 140 kB) outgrow the pipe meanwhile
    answers = [json.loads(line) for line in server.stdout]
    assert server.wait(timeout=60) == 0
    assert sorted(answer["id"] for answer in answers) == list(range(41))


ARGUMENT_CASES = [
    # tool, arguments -> the error's text, one line per problem
    ("search", {"collection": "notes", "query": QUERY, "k": 20},
     "k: unknown argument; search takes query, collection, top_k, filter, mode"),
    ("search", {"collection": "notes", "query": QUERY, "top_k": "ten"},
     "top_k: must be an integer, got 'ten'"),
    ("search", {"collection": "notes", "top_k": 0},
     "query: required\ntop_k: must be >= 1, got 0"),
    ("get_document", {"collection": "notes", "id": "code/logs.md"},
     "document_id: required\n"
     "id: unknown argument; get_document takes document_id, collection, offset"),
    ("list_collections", {"verbose": True},
     "verbose: unknown argument; list_collections takes no arguments"),
]


def test_stdio_tool_arguments_are_checked_and_told_one_line_per_problem(
        built_dir: Path, tmp_path: Path) -> None:
    """An unknown argument (``k`` for ``top_k``) was ignored, so the call answered five hits
    and the assistant never learnt; a wrong type or a missing argument came back as
    pydantic's multi-line dump with an errors.pydantic.dev link."""
    async def session() -> tuple[dict[str, Any], list[Any]]:
        async with Client(_stdio(built_dir, server_env(tmp_path))) as client:
            schemas = {tool.name: tool.input_schema
                       for tool in (await client.list_tools()).tools}
            return schemas, [await client.call_tool(tool, arguments)
                             for tool, arguments, _ in ARGUMENT_CASES]

    schemas, results = anyio.run(session)
    assert {name: schema["additionalProperties"] for name, schema in schemas.items()} == {
        name: False for name in READ_TOOLS}
    for (tool, arguments, expected), result in zip(ARGUMENT_CASES, results, strict=True):
        assert result.is_error, (tool, arguments)
        assert [block.text for block in result.content] == [expected]


def test_write_tools_only_when_config_enables_them(data_copy: Path, tmp_path: Path) -> None:
    new_text = "The sourdough starter is fed with rye flour every morning at eight."

    async def session() -> dict[str, Any]:
        params = _stdio(data_copy, server_env(tmp_path, "[node]\nmcp_writes = true\n"))
        async with Client(params) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            added = _structured(await client.call_tool("add_documents", {
                "collection": "notes",
                "documents": [{"id": "kitchen/bread.md", "text": new_text}]}))
            found = _structured(await client.call_tool(
                "search", {"collection": "notes", "query": "feeding a sourdough starter",
                           "top_k": 1}))
            deleted = _structured(await client.call_tool("delete_documents", {
                "collection": "notes", "document_ids": ["kitchen/bread.md", "ghost.md"]}))
            after = _structured(await client.call_tool(
                "search", {"collection": "notes", "query": "feeding a sourdough starter",
                           "top_k": 1}))
            return {"names": names, "added": added, "found": found, "deleted": deleted,
                    "after": after}

    answers = anyio.run(session)
    assert answers["names"] == READ_TOOLS | {"add_documents", "delete_documents"}
    assert answers["added"]["report"]["added"] == 1
    assert answers["found"]["hits"][0]["document_id"] == "kitchen/bread.md"
    assert answers["deleted"]["report"] == {"collection": "notes", "deleted": ["kitchen/bread.md"],
                                            "not_found": ["ghost.md"]}
    assert answers["after"]["hits"][0]["document_id"] != "kitchen/bread.md"


def test_http_transport_needs_a_token_and_answers_the_same(data_copy: Path,
                                                          tmp_path: Path) -> None:
    tokens = TokenStore(data_copy)
    _, read_token = tokens.create("read")
    server = BackgroundProcess(["--data-dir", str(data_copy), "mcp", "--http", "127.0.0.1:0"],
                               server_env(tmp_path))
    try:
        url = server.address
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        anonymous = httpx2.post(url, json=initialize, headers=headers)
        forged = httpx2.post(url, json=initialize,
                             headers={**headers, "Authorization": "Bearer mdx_00000000_x"})
        assert anonymous.status_code == 401
        assert "meshdex token create --scope read" in anonymous.json()["error"]
        assert forged.status_code == 401

        def transport() -> Any:
            # The first search loads the model in the server: allow more than httpx's 5 s.
            client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {read_token}"},
                                        timeout=httpx2.Timeout(120.0))
            return streamable_http_client(url, http_client=client)

        answer = anyio.run(_search_session, transport())
    finally:
        server.stop()
    _same_hits(answer, _cli_search(data_copy))


def test_node_mode_gives_the_same_results(data_copy: Path, tmp_path: Path) -> None:
    embedded = anyio.run(_search_session, _stdio(data_copy, server_env(tmp_path)))
    _, token = TokenStore(data_copy).create("read")
    node = BackgroundProcess(["--data-dir", str(data_copy), "serve", "--listen", "127.0.0.1:0"],
                             server_env(tmp_path))
    try:
        remote = anyio.run(_search_session, _stdio(
            tmp_path / "unused", server_env(tmp_path), "--node", node.address, "--token", token))
    finally:
        node.stop()
    assert remote["hits"] == embedded["hits"]
    assert remote["hits"][0]["document_id"] == "code/logs.md"


@pytest.mark.parametrize("address", ["0.0.0.0:7711", "192.168.1.5:7711"])
def test_http_beyond_loopback_needs_tls(tmp_path: Path, address: str) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "mcp", "--http", address])
    assert result.exit_code == 2
    assert f"refusing to listen on {address} without TLS" in result.output


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:99999", "port must be 0-65535"),
    ("unix:/tmp/meshdex-mcp.sock", "--http takes HOST:PORT"),
])
def test_http_address_that_cannot_be_served_is_refused_in_one_line(tmp_path: Path, address: str,
                                                                   message: str) -> None:
    """Port 99999 ended in an OverflowError traceback from bind(); a unix: path was told it
    was "not HOST:PORT or unix:/path"."""
    done = subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(tmp_path / "data"), "mcp", "--http",
         address], capture_output=True, text=True, timeout=120,
        env={**os.environ, **server_env(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------- bounds (mechanics)


class BoundsNode:
    """A node double returning ``hits`` passages of ``passage_chars`` each, one long document."""

    def __init__(self, *, hits: int, passage_chars: int, document_chars: int = 0) -> None:
        self.hits, self.passage_chars, self.document_chars = hits, passage_chars, document_chars
        self.asked_top_k: int | None = None

    def search(self, collection: str, query: str, *, top_k: int = 5, filter: Any = None,
               params: Any = None, mode: str | None = None) -> SearchResults:
        self.asked_top_k = top_k
        hits = [PassageHit(document_id=f"d{i}", source=None, metadata={},
                           passage="x" * self.passage_chars, score=1.0 - i / 100)
                for i in range(min(top_k, self.hits))]
        return SearchResults(collection=collection, hits=hits, stats=SearchStats())

    def get_document(self, collection: str, doc_id: str) -> Document:
        text = "".join(chr(ord("a") + i % 26) for i in range(self.document_chars))
        return Document(collection=collection, id=doc_id, text=text, metadata={}, source=None,
                        content_hash="0" * 64, hlc=None, passage_keys=())  # type: ignore[arg-type]


SEARCH_BOUNDS = [
    # hits, passage chars, top_k asked -> hits returned, top_k sent, note fragment or None
    (5, 100, 5, 5, 5, None),
    (80, 100, 80, MAX_TOP_K, MAX_TOP_K,
     f"top_k lowered from 80 to {MAX_TOP_K}, the MCP server's maximum (more hits would crowd "
     f"the conversation out of the model's context; `meshdex search` takes up to "
     f"{NODE_MAX_TOP_K})"),
    (3, MAX_PASSAGE_CHARS + 500, 3, 3, 3, f"cut to {MAX_PASSAGE_CHARS} characters"),
    (40, MAX_PASSAGE_CHARS, 40, MAX_RESULT_CHARS // MAX_PASSAGE_CHARS, 40,
     "lower-ranked hits left out"),
]


@pytest.mark.parametrize(("hits", "chars", "top_k", "returned", "sent", "note"), SEARCH_BOUNDS)
def test_search_results_are_bounded_with_a_note(hits, chars, top_k, returned, sent,
                                                note) -> None:
    node = BoundsNode(hits=hits, passage_chars=chars)
    answer = McpTools(node, writes=False).search("q", "c", top_k)
    assert node.asked_top_k == sent
    assert len(answer["hits"]) == returned
    assert sum(len(hit["passage"]) for hit in answer["hits"]) <= MAX_RESULT_CHARS
    assert answer["truncated"] is (note is not None)
    if note:
        assert note in answer["note"]


def test_get_document_pages_through_a_long_text() -> None:
    node = BoundsNode(hits=0, passage_chars=0, document_chars=MAX_RESULT_CHARS * 2 + 7)
    tools = McpTools(node, writes=False)
    full = node.get_document("c", "d").text
    pieces, offset = [], 0
    while True:
        page = tools.get_document("d", "c", offset)
        pieces.append(page["text"])
        if not page["truncated"]:
            break
        offset = int(re.search(r"offset=(\d+)", page["note"]).group(1))
    assert "".join(pieces) == full
    assert len(pieces) == 3


@pytest.mark.parametrize(("call", "message"), [
    (lambda t: t.search("q", mode="graph"), "mode must be one of"),
    (lambda t: t.get_document("d", offset=-1), "offset must be >= 0"),
    (lambda t: t.add_documents([{"id": "a", "text": "b"}]), "disabled"),
    (lambda t: t.delete_documents(["a"]), "disabled"),
])
def test_bad_calls_get_clear_errors(call, message) -> None:
    tools = McpTools(BoundsNode(hits=1, passage_chars=1), writes=False)
    with pytest.raises(Exception, match=message) as raised:
        call(tools)
    assert isinstance(raised.value, InvalidArgument) or "mcp_writes" in str(raised.value)


async def _plain_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


GATE_CASES = [
    # token scope presented (None: no header), scope the server needs -> HTTP status and
    # WWW-Authenticate (RFC 6750 section 3.1; a 403 said a bare "Bearer", not what was missing)
    (None, "read", 401, "Bearer"),
    ("read", "read", 200, None),
    ("write", "read", 200, None),
    # writes on: a read token may not reach the write tools
    ("read", "write", 403, 'Bearer error="insufficient_scope", scope="write"'),
    ("write", "write", 200, None),
    ("admin", "write", 200, None),
    ("revoked", "read", 401, 'Bearer error="invalid_token"'),
]


@pytest.mark.parametrize(("presented", "needed", "status", "challenge"), GATE_CASES)
def test_http_gate_checks_the_token_and_its_scope(tmp_path: Path, presented, needed,
                                                  status, challenge) -> None:
    tokens = TokenStore(tmp_path)
    headers = {}
    if presented == "revoked":
        record, token = tokens.create("admin")
        tokens.revoke(record.token_id)
        headers = {"Authorization": f"Bearer {token}"}
    elif presented is not None:
        headers = {"Authorization": f"Bearer {tokens.create(presented)[1]}"}
    gate = BearerTokenGate(_plain_ok, tokens=tokens, scope=needed)

    async def call() -> httpx2.Response:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gate),
                                      base_url="http://127.0.0.1") as client:
            return await client.post("/mcp", headers=headers)

    response = anyio.run(call)
    assert response.status_code == status
    assert response.headers.get("WWW-Authenticate") == challenge
    if status != 200:
        assert "error" in response.json()
