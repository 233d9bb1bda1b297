"""What the ``meshdex mcp`` tests share: the environment a server runs in, a background HTTP
server, and reading the one JSON-RPC answer of an HTTP reply (plain JSON or SSE)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx2
from meshdex.node.service import Node

URL_LINE = re.compile(r"listening on (\S+)")
INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "a script", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def server_env(tmp_path: Path, config: str | None = None) -> dict[str, str]:
    """Offline, with no user config, or with ``config`` as its config file."""
    env = {"HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path / "no-config")}
    if config is not None:
        path = tmp_path / "config.toml"
        path.write_text(config)
        env["MESHDEX_CONFIG"] = str(path)
    return env


class BackgroundProcess:
    """A ``meshdex`` subprocess that prints ``listening on X`` on stderr when ready."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "meshdex", *args],
                                        stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **env})
        self.lines: list[str] = []
        for line in self.process.stderr:
            self.lines.append(line)
            match = URL_LINE.search(line)
            if match:
                self.address = match.group(1)
                threading.Thread(target=lambda: self.lines.extend(self.process.stderr),
                                 daemon=True).start()
                return
        raise AssertionError("exited before listening:\n" + "".join(self.lines))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def answer_of(response: httpx2.Response) -> Any:
    """The JSON-RPC message an HTTP reply carries (its body, or its SSE event's data); None
    for an empty body."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[len("data:"):].strip() for line in response.text.splitlines()
                if line.startswith("data:") and line[len("data:"):].strip()]
        assert len(data) == 1, response.text
        return json.loads(data[0])
    return response.json() if response.content else None


def open_session(client: httpx2.Client, url: str) -> dict[str, str]:
    """Initialize an MCP session over ``client``; the headers later requests need."""
    response = client.post(url, json=INITIALIZE, headers=ACCEPT)
    assert response.status_code == 200, response.text
    headers = {**ACCEPT, "Mcp-Session-Id": response.headers["mcp-session-id"],
               "Mcp-Protocol-Version": INITIALIZE["params"]["protocolVersion"]}
    done = client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                       headers=headers)
    assert done.status_code == 202, done.text
    return headers


def empty_data_dir(tmp_path_factory: Any, name: str) -> Path:
    """A data directory with a store and no collection, for a module's MCP servers."""
    data_dir = tmp_path_factory.mktemp(name) / "data"
    with Node.open(data_dir):
        pass
    return data_dir
