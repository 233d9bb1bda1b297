"""``meshdex mcp`` answers every message as JSON-RPC 2.0 says, on stdio and on HTTP alike.

One table of messages, sent to a real ``meshdex mcp`` subprocess over its stdin and to a real
``meshdex mcp --http`` over a socket. A request whose id is null, 9.5 or true got no answer
(the SDK read it as a notification); over HTTP a batch or a bad envelope got pydantic's
validation dump under -32602.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp_support import (
    INITIALIZE,
    BackgroundProcess,
    answer_of,
    empty_data_dir,
    open_session,
    server_env,
)
from meshdex.node.auth import TokenStore

PING = {"jsonrpc": "2.0", "method": "ping"}
NOTIFY = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
RESULT = "result"

MESSAGE_CASES = [
    # name, the message's JSON text -> the answer's (id, error code or RESULT), or None for no
    # answer at all; the HTTP status it comes with
    ("a string id", json.dumps({**PING, "id": "s-1"}), ("s-1", RESULT), 200),
    ("an integer id", json.dumps({**PING, "id": 2}), (2, RESULT), 200),
    ("a null id", json.dumps({**PING, "id": None}), (None, -32600), 400),
    ("a fractional id", json.dumps({**PING, "id": 9.5}), (None, -32600), 400),
    ("a boolean id", json.dumps({**PING, "id": True}), (None, -32600), 400),
    ("an object id", json.dumps({**PING, "id": {"n": 1}}), (None, -32600), 400),
    ("a notification", json.dumps(NOTIFY), None, 202),
    ("a notification with positional params", json.dumps({**NOTIFY, "params": [1]}), None, 202),
    ("an unknown method", json.dumps({"jsonrpc": "2.0", "id": 3, "method": "no/such"}),
     (3, -32601), 200),
    ("jsonrpc 1.0", json.dumps({**PING, "jsonrpc": "1.0", "id": 4}), (4, -32600), 400),
    ("no jsonrpc member", json.dumps({"method": "ping"}), (None, -32600), 400),
    ("params a string", json.dumps({**PING, "id": 5, "params": "x"}), (5, -32600), 400),
    ("params an array", json.dumps({**PING, "id": 6, "params": [1, 2]}), (6, -32602), 400),
    ("a method that is no string", json.dumps({"jsonrpc": "2.0", "id": 7, "method": 7}),
     (7, -32600), 400),
    ("neither request nor response", json.dumps({"jsonrpc": "2.0", "id": 8}), (None, -32600),
     400),
    ("not JSON", "this is not json", (None, -32700), 400),
    ("a batch", json.dumps([{**PING, "id": 9}, {**PING, "id": 10}]), (None, -32600), 400),
    ("an empty batch", "[]", (None, -32600), 400),
    ("a number", "42", (None, -32600), 400),
]
CASE_IDS = [case[0] for case in MESSAGE_CASES]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return empty_data_dir(tmp_path_factory, "mcp-jsonrpc")


def _outcome(answer: dict[str, Any]) -> tuple[Any, Any]:
    assert answer["jsonrpc"] == "2.0", answer
    return answer["id"], RESULT if "result" in answer else answer["error"]["code"]


def test_stdio_answers_each_message_as_json_rpc_says(store_dir: Path, tmp_path: Path) -> None:
    lines = [json.dumps(INITIALIZE), json.dumps({"jsonrpc": "2.0",
                                                  "method": "notifications/initialized"})]
    lines += [text for _, text, _, _ in MESSAGE_CASES]
    done = subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(store_dir), "mcp"],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True,
        timeout=120, env={**os.environ, **server_env(tmp_path)})
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    # The session answers at its pace, refusals at once: compare what was answered, not when.
    expected = Counter([(0, RESULT)] + [answer for _, _, answer, _ in MESSAGE_CASES
                                        if answer is not None])
    assert Counter(_outcome(answer) for answer in answers) == expected
    assert "batches" in next(answer["error"]["message"] for answer in answers
                             if "batch" in answer.get("error", {}).get("message", ""))


@pytest.fixture(scope="module")
def http_server(store_dir: Path, tmp_path_factory) -> Any:
    _, token = TokenStore(store_dir).create("read")
    server = BackgroundProcess(["--data-dir", str(store_dir), "mcp", "--http", "127.0.0.1:0"],
                               server_env(tmp_path_factory.mktemp("mcp-http-env")))
    try:
        yield server.address, token
    finally:
        server.stop()


@pytest.mark.parametrize(("name", "text", "answer", "status"), MESSAGE_CASES, ids=CASE_IDS)
def test_http_answers_each_message_as_json_rpc_says(http_server, name, text, answer,
                                                    status) -> None:
    url, token = http_server
    with httpx2.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        headers = open_session(client, url)
        response = client.post(url, content=text,
                               headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    got = answer_of(response)
    assert (None if got is None else _outcome(got)) == answer, response.text
    if got is not None and "error" in got:
        assert "validation error" not in got["error"]["message"].lower()
