"""``meshdex ask`` against a real HTTP server the test runs, speaking the chat completions API.

No LLM weights can be installed here, so ``ChatServer`` stands in for Ollama / llama.cpp: a real
``ThreadingHTTPServer`` on a loopback port answering ``POST /v1/chat/completions`` streamed
(server-sent events) or whole, with the answer the test scripts; it records each request so the
test can check the prompt. Retrieval runs for real (real model, real LMDB).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from meshdex.index.errors import InvalidArgument
from meshdex.node.ask import build_messages, chat_endpoint, cited_numbers
from meshdex.node.cli.main import cli
from meshdex.node.records import DocumentInput, PassageHit
from meshdex.node.service import Node

pytestmark = pytest.mark.model

CORPUS = {
    "ops/logs.md": "Rotate the application logs with logrotate: daily, compress, keep 14, and "
    "send SIGHUP to the service afterwards so it reopens its log file.",
    "ops/backups.md": "Nightly backups run with restic to the NAS; the retention policy keeps "
    "seven daily and four weekly snapshots.",
    "garden/tomatoes.md": "Tomatoes need full sun, deep watering twice a week and a stake.",
}
QUESTION = "How do I rotate the logs?"
ANSWER_PIECES = ["Use logrotate ", "daily with compression ", "and send SIGHUP [1]."]


class QuietHTTPServer(ThreadingHTTPServer):
    """Keeps a handler's failure (a client that timed out and hung up) off stderr, which the
    CLI tests capture as the command's output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class ChatServer:
    """A chat completions server on 127.0.0.1: ``pieces`` is the answer, streamed piece by
    piece; ``hold_after_first`` makes it wait after the first piece until ``release`` is set;
    ``stall_s`` makes it wait before answering at all; ``misbehaviour`` answers as a wrong
    server would: ``"web_page"`` a 200 HTML page, ``"unknown_model"`` Ollama's 404 for a model
    it does not have, ``"no_streaming"`` one JSON reply to a streamed request, ``"cut_off"``
    the first piece and no end, ``"delta_not_object"`` a chunk whose delta is text,
    ``"content_not_text"`` a whole reply whose content is a list."""

    def __init__(self) -> None:
        self.pieces: list[str] = list(ANSWER_PIECES)
        self.requests: list[dict[str, Any]] = []
        self.hold_after_first = False
        self.release = threading.Event()
        self.stall_s = 0.0
        self.misbehaviour: str | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                if server.stall_s:
                    time.sleep(server.stall_s)
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if server.misbehaviour == "web_page":
                    self._reply(200, "text/html",
                                b"<!DOCTYPE html>\n<html><body>\n<h1>Welcome to nginx!</h1>\n"
                                b"</body></html>\n")
                elif server.misbehaviour == "unknown_model":
                    self._reply(404, "application/json", json.dumps({
                        "error": f"model \"{body['model']}\" not found, try pulling it first"
                    }).encode())
                elif server.misbehaviour == "delta_not_object":
                    self._reply(200, "text/event-stream",
                                b'data: {"choices": [{"delta": "Use logrotate"}]}\n\n')
                elif server.misbehaviour == "content_not_text":
                    self._json({"choices": [{"message": {"content": [{"text": "Use it"}]}}]})
                elif body.get("stream") and server.misbehaviour != "no_streaming":
                    self._stream()
                else:
                    self._json({"choices": [{"index": 0, "message": {
                        "role": "assistant", "content": "".join(server.pieces)}}]})

            def _json(self, payload: dict[str, Any]) -> None:
                self._reply(200, "application/json", json.dumps(payload).encode())

            def _reply(self, status: int, content_type: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for number, piece in enumerate(server.pieces):
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if server.misbehaviour == "cut_off":
                        return
                    if number == 0 and server.hold_after_first:
                        server.release.wait(60)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, real_embedder) -> Path:
    path = tmp_path_factory.mktemp("ask") / "data"
    with Node.open(path) as node:
        node.upsert_documents("notes", [DocumentInput(id=doc_id, text=text,
                                                      source=f"/home/me/{doc_id}")
                                        for doc_id, text in CORPUS.items()],
                              create_missing=True)
        node.build("notes")
    return path


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.delenv("MESHDEX_CONFIG", raising=False)


def ask_cli(data_dir: Path, url: str, *extra: str):
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "ask", "-c", "notes", QUESTION,
                                    "--llm-url", url, "--llm-model", "test-model", "--top-k",
                                    "2", *extra])


def test_prompt_holds_numbered_passages_and_cited_sources_are_printed(data_dir, chat) -> None:
    result = ask_cli(data_dir, chat.url)
    assert result.exit_code == 0, result.output
    [request] = chat.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "test-model"
    assert request["body"]["stream"] is True
    prompt = request["body"]["messages"][-1]["content"]
    assert f"[1] (source: /home/me/ops/logs.md)\n{CORPUS['ops/logs.md']}" in prompt
    assert "[2] (source: /home/me/" in prompt and "[3]" not in prompt
    assert prompt.endswith(f"Question: {QUESTION}")
    assert "".join(ANSWER_PIECES) in result.output
    sources = result.output.split("sources:")[1]
    assert re.search(r"\[1\] /home/me/ops/logs\.md  \((cosine 0\.\d{3}|bm25 [\d.]+)", sources)
    assert "[2]" not in sources  # given to the model but not cited


def test_json_gives_answer_sources_and_timings(data_dir, chat) -> None:
    result = ask_cli(data_dir, chat.url, "--json", "--no-stream")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert chat.requests[0]["body"]["stream"] is False
    assert answer["answer"] == "".join(ANSWER_PIECES)
    assert [(s["number"], s["document_id"], s["cited"]) for s in answer["sources"]][0] == (
        1, "ops/logs.md", True)
    assert len(answer["sources"]) == 2 and answer["sources"][1]["cited"] is False
    timings = answer["timings"]
    assert 0 < timings["retrieve_s"] <= timings["total_s"]
    assert 0 <= timings["first_token_s"] <= timings["llm_s"]


def test_an_answer_citing_nothing_lists_what_the_model_was_given(data_dir, chat) -> None:
    chat.pieces = ["I cannot tell from these passages."]
    result = ask_cli(data_dir, chat.url)
    assert result.exit_code == 0, result.output
    assert "the answer cited no passage; it was given:" in result.output
    assert "[1] /home/me/ops/logs.md" in result.output and "[2] " in result.output


def test_streamed_answer_is_printed_as_it_arrives(data_dir, chat, tmp_path) -> None:
    chat.hold_after_first = True
    process = subprocess.Popen(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "ask", "-c", "notes",
         QUESTION, "--llm-url", chat.url, "--llm-model", "m", "--top-k", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path)},
    )
    seen = b""
    try:
        while ANSWER_PIECES[0].encode() not in seen:
            byte = process.stdout.read(1)
            assert byte, process.stderr.read().decode()
            seen += byte
        assert not chat.release.is_set()  # the rest of the answer has not been sent yet
        assert ANSWER_PIECES[1].encode() not in seen
        chat.release.set()
        rest, errors = process.communicate(timeout=60)
    finally:
        chat.release.set()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, errors.decode()
    assert "".join(ANSWER_PIECES) in (seen + rest).decode()
    assert "sources:" in rest.decode()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


FAILURES = [
    # how the server misbehaves, extra flags, exit code, message
    ("down", (), 5, "cannot reach the LLM server at"),
    ("stall", ("--timeout-s", "0.5"), 8, "sent nothing for 0.5 s"),
    ("empty", (), 5, "returned an empty answer"),
    ("empty", ("--no-stream",), 5, "returned an empty answer"),
    ("wrong_path", (), 5, "check llm_url: nothing answers chat completions"),
    ("web_page", (), 5, "is not a chat completion stream: <!DOCTYPE html> <html><body>"),
    ("unknown_model", (), 5, "check llm_model: the server has no model 'test-model'"),
    ("delta_not_object", (), 5, "is not a chat completion chunk: {\"choices\""),
    ("content_not_text", ("--no-stream",), 5, "is not a chat completion: {'choices'"),
]


@pytest.mark.parametrize(("failure", "extra", "code", "message"), FAILURES)
def test_llm_failures_give_an_exit_code_and_one_line(data_dir, chat, failure, extra, code,
                                                     message) -> None:
    url = chat.url
    if failure == "down":
        url = _dead_url()
    elif failure == "stall":
        chat.stall_s = 2.0
    elif failure == "empty":
        chat.pieces = ["", "  "]
    elif failure == "wrong_path":
        url = f"{chat.url}/v1/chat/completions/extra"
    else:
        chat.misbehaviour = failure
    result = ask_cli(data_dir, url, *extra)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_answer_broken_off_is_an_error_on_its_own_line(data_dir, chat) -> None:
    """A stream that stopped after its first piece (no [DONE], no finish_reason) printed
    that piece as the whole answer, listed sources and exited 0."""
    chat.misbehaviour = "cut_off"
    result = ask_cli(data_dir, chat.url)
    assert result.exit_code == 5, result.output
    assert result.output.splitlines()[:2] == [
        ANSWER_PIECES[0],
        f"error: the LLM server at {chat.url}/v1/chat/completions broke off before the end of "
        "its answer hint: the answer is incomplete; the server's own log says why"]
    assert "sources:" not in result.output


def test_a_server_that_does_not_stream_still_gives_its_answer(data_dir, chat) -> None:
    """A server that ignores ``stream`` and sends one JSON reply: its answer, not "empty"."""
    chat.misbehaviour = "no_streaming"
    result = ask_cli(data_dir, chat.url)
    assert result.exit_code == 0, result.output
    assert "".join(ANSWER_PIECES) in result.output


def test_remote_llm_is_refused_before_anything_is_sent(data_dir, chat) -> None:
    result = ask_cli(data_dir, "http://192.0.2.7:11434")
    assert result.exit_code == 2
    assert "refusing to send passages to the non-local LLM at 192.0.2.7" in result.output
    assert "--allow-remote-llm" in result.output


@pytest.mark.parametrize(("command", "top_k"), [
    (["ask", QUESTION, "--llm-url", "http://127.0.0.1:9", "--llm-model", "m"], "0"),
    (["search", QUESTION], "0"),
    (["search", QUESTION], "1001"),
])
def test_a_top_k_out_of_range_is_named_as_the_option_typed(data_dir, command, top_k) -> None:
    """``meshdex ask -k 0`` (and search) said ``top_k must be ...``: a name the user never
    typed; the refusal names ``--top-k`` and exits 2 before any passage is retrieved."""
    done = subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *command, "-c", "notes",
         "-k", top_k], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: --top-k must be in [1, 1000], got {top_k}\n"


def test_missing_llm_settings_are_named(data_dir) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "ask", QUESTION])
    assert result.exit_code == 2
    assert "set llm_url and llm_model" in result.output


def test_config_supplies_the_llm(data_dir, chat, tmp_path, monkeypatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[node]\nllm_url = "{chat.url}/v1"\nllm_model = "from-config"\n')
    monkeypatch.setenv("MESHDEX_CONFIG", str(config))
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "ask", "-c", "notes",
                                      QUESTION])
    assert result.exit_code == 0, result.output
    assert chat.requests[0]["body"]["model"] == "from-config"


ENDPOINTS = [
    # url, allow_remote -> endpoint, or None when refused
    ("http://127.0.0.1:11434", False, "http://127.0.0.1:11434/v1/chat/completions"),
    ("http://localhost:8080/v1/", False, "http://localhost:8080/v1/chat/completions"),
    ("http://[::1]:8080/v1/chat/completions", False, "http://[::1]:8080/v1/chat/completions"),
    ("https://llm.example.com", False, None),
    ("http://10.0.0.5:11434", False, None),
    ("http://10.0.0.5:11434", True, "http://10.0.0.5:11434/v1/chat/completions"),
    ("ftp://127.0.0.1/x", True, None),
]


@pytest.mark.parametrize(("url", "allow", "expected"), ENDPOINTS)
def test_chat_endpoint_is_local_unless_allowed(url, allow, expected) -> None:
    if expected is None:
        with pytest.raises(InvalidArgument):
            chat_endpoint(url, allow_remote=allow)
    else:
        assert chat_endpoint(url, allow_remote=allow) == expected


@pytest.mark.parametrize(("answer", "cited"), [
    ("Use logrotate [1].", {1}),
    ("See [2][3] and [1, 4].", {1, 2, 3, 4}),
    ("No citations here, just [brackets].", set()),
])
def test_citations_are_read_from_the_answer(answer, cited) -> None:
    assert cited_numbers(answer) == cited


def test_messages_number_the_passages_from_one() -> None:
    hits = [PassageHit(document_id=f"d{i}", source=None, metadata={}, passage=f"text {i}",
                       score=0.5) for i in range(3)]
    system, user = build_messages("q?", hits)
    assert system["role"] == "system" and "[1]" in system["content"]
    assert user["content"].index("[1] (source: d0)") < user["content"].index("[3] (source: d2)")
