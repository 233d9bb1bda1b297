"""``meshdex sync`` on a device that does not run ``meshdex serve``: its one session brings the
peer's index bundles too, and what no bundle covers is indexed per ``index_policy`` before
the command exits, saying so in its report.

A desktop serves three collections: ``default`` built, ``raw`` never built, ``web`` with an
http embedder. A laptop (real CLI subprocesses counting the real model's calls) joins and
runs ``meshdex sync``. Before, the one-shot session exchanged documents only: "received 3",
then "collection 'default' has no index yet", and ``sync --json`` said ``"decision": null``.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests.counting_meshdex import LOG_ENV, embedded_passages
from tests.sync_support import SyncServeProcess, write_jsonl

COUNTING = (sys.executable, str(Path(__file__).with_name("counting_meshdex.py")))
DEFAULT_DOCS = {"boats.md": "A sailing boat needs wind; a rowing boat needs oars.",
                "fruit.md": "Apples and pears grow on trees in the orchard.",
                "bread.md": "Sourdough bread rises slowly overnight in a warm kitchen."}
RAW_DOCS = {"owl.md": "Owls hunt mice at night in the barn.",
            "tide.md": "The tide comes in twice a day along the coast."}
SYNC_TIMEOUT_S = 300  # the laptop may load the model and build; slow on a loaded 2-core box
pytestmark = pytest.mark.model


class Laptop(SyncServeProcess):
    """A device that never serves: no listeners, ``index_policy`` as given, its real model's
    calls counted in ``embed_log``."""

    def __init__(self, data_dir: Path, policy: str) -> None:
        super().__init__(data_dir, launcher=COUNTING)
        self.policy = policy

    @property
    def embed_log(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.embeds")

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, LOG_ENV: str(self.embed_log), "MESHDEX_INDEX_POLICY": self.policy,
                "MESHDEX_SYNC_LISTEN": "", "MESHDEX_PAIR_LISTEN": ""}


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    root = tmp_path_factory.mktemp("desktop")
    desktop = SyncServeProcess(root / "desktop")
    desktop.meshdex("add", "--jsonl", write_jsonl(root / "default.jsonl", DEFAULT_DOCS))
    desktop.meshdex("build")
    desktop.meshdex("add", "-c", "raw", "--jsonl", write_jsonl(root / "raw.jsonl", RAW_DOCS))
    desktop.meshdex("init", "-c", "web", "--embedder", "http", "--embedder-url",
                    "http://127.0.0.1:9", "--embedder-model", "none")
    desktop.meshdex("add", "-c", "web", "--jsonl",
                    write_jsonl(root / "web.jsonl", {"page.md": "A page about the web."}))
    desktop.start()
    yield desktop
    desktop.stop(signal.SIGKILL)


def _joined(desktop: SyncServeProcess, tmp_path: Path, policy: str) -> Laptop:
    laptop = Laptop(tmp_path / "laptop", policy)
    token = desktop.meshdex("invite", "--collections", "default,raw,web").stdout.strip()
    laptop.meshdex("join", token)
    return laptop


def _top_hit(laptop: Laptop, query: str, collection: str = "default") -> str:
    result = laptop.meshdex("search", "-c", collection, query, "--json")
    return json.loads(result.stdout)["hits"][0]["document_id"]


def test_sync_without_serve_installs_the_peers_bundle_and_says_what_it_left_unindexed(
        desktop, tmp_path):
    laptop = _joined(desktop, tmp_path, "fetch")
    [report] = json.loads(laptop.meshdex("sync", "--json", timeout_s=SYNC_TIMEOUT_S).stdout)
    assert report["error"] is None
    by_name = {c["collection"]: c for c in report["collections"]}
    default, raw, web = by_name["default"], by_name["raw"], by_name["web"]
    assert (default["received"], default["decision"]) == (3, "use")
    assert default["bundle_bytes_total"] > 0 and default.get("index") is None
    assert embedded_passages(laptop.embed_log) == 0  # the desktop's bundle, not a build here
    assert _top_hit(laptop, "what moves a sailing boat") == "boats.md"
    for left in (raw, web):  # the desktop has no bundle of these: fetch builds nothing
        assert left["decision"] is None and left["index"]["action"] == "not_built"
        assert "index_policy fetch" in left["index"]["reason"]
        assert "offered no bundle" in left["index"]["reason"]
    assert "meshdex build -c raw" in raw["index"]["reason"]


def test_sync_without_serve_builds_what_no_bundle_covers_with_policy_auto(desktop, tmp_path):
    laptop = _joined(desktop, tmp_path, "auto")
    result = laptop.meshdex("sync", timeout_s=SYNC_TIMEOUT_S)
    lines = result.stdout.splitlines()
    assert "  default: received 3, sent 0, conflicts 0" in lines
    assert any(line.startswith("    bundle: use (") for line in lines), result.stdout
    raw_index = next(line for line in lines if line.startswith("    index: built generation"))
    assert "(2 passages)" in raw_index
    # only raw's two passages were embedded here: default came as the desktop's bundle
    assert embedded_passages(laptop.embed_log) == 2
    assert "    index: not built: the embedder of 'web' sends text to http://127.0.0.1:9" \
        in result.stdout and "sync_allow_network_embedders" in result.stdout
    assert _top_hit(laptop, "what moves a sailing boat") == "boats.md"
    assert _top_hit(laptop, "birds hunting at night", "raw") == "owl.md"


def _on_a_terminal(laptop: Laptop, *args: str) -> tuple[str, str]:
    """``meshdex ARGS`` with stderr on a pseudo-terminal, as a person runs it: (stdout,
    what the terminal showed)."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80x24
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the other end closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        result = subprocess.run([*laptop.launcher, *args], stdout=subprocess.PIPE,
                                stderr=terminal, text=True, env=laptop.env,
                                timeout=SYNC_TIMEOUT_S)
    finally:
        os.close(terminal)
    reader.join(10)
    os.close(controller)
    assert result.returncode == 0, b"".join(shown).decode(errors="replace")
    return result.stdout, b"".join(shown).decode(errors="replace")


def test_sync_without_serve_builds_here_with_policy_build_showing_the_build_progress(
        desktop, tmp_path):
    laptop = _joined(desktop, tmp_path, "build")
    stdout, terminal = _on_a_terminal(laptop, "sync", "--json")
    by_name = {c["collection"]: c for c in json.loads(stdout)[0]["collections"]}
    default = by_name["default"]
    assert default["decision"] == "build" and "index_policy is build" in default["reason"]
    assert default["bundle_bytes_fetched"] == 0
    assert (default["index"]["action"], default["index"]["passages"]) == ("built", 3)
    assert by_name["raw"]["index"]["action"] == "built"
    assert by_name["web"]["index"]["action"] == "not_built"
    assert embedded_passages(laptop.embed_log) == 5
    assert "passage" in terminal and "100%" in terminal  # the build's progress bar
    assert _top_hit(laptop, "what moves a sailing boat") == "boats.md"
