"""A one-shot ``meshdex sync`` whose sessions went through but whose build afterwards failed
said "some peers could not be synced" and exited 12, as if the documents had not arrived.
Now the collection's report says the index failed and why (``index.action == "failed"`` with
``error_kind``), the session stays ok, and the last line names the build, for which
collection, exiting with that failure's code (an unreachable embedder: 9, as ``meshdex
build``). A desktop serves (real process, real mutual TLS); the laptop joins and syncs with
``index_policy build`` a collection whose embedder is an http server nobody runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from meshdex.index.errors import EmbedderError
from meshdex.node.cli.main import EXIT_CODES
from sync_support import SyncServeProcess, write_jsonl

NOBODY = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9", "--embedder-model",
          "none")


class Laptop(SyncServeProcess):
    """A device that never serves and builds what it receives, network embedders too."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "MESHDEX_SYNC_LISTEN": "", "MESHDEX_PAIR_LISTEN": "",
                "MESHDEX_INDEX_POLICY": "build", "MESHDEX_SYNC_ALLOW_NETWORK_EMBEDDERS": "true"}


@pytest.fixture
def joined(tmp_path: Path):
    desktop = SyncServeProcess(tmp_path / "desktop")
    desktop.meshdex("init", "-c", "web", *NOBODY)
    desktop.meshdex("add", "-c", "web", "--jsonl",
                    write_jsonl(tmp_path / "web.jsonl", {"page.md": "A page about the web."}))
    desktop.start()
    laptop = Laptop(tmp_path / "laptop")
    laptop.meshdex("join", desktop.meshdex("invite", "--collections", "web").stdout.strip())
    yield laptop
    desktop.stop(signal.SIGKILL)


def test_a_build_failing_after_a_good_sync_is_reported_as_the_build_not_the_sync(joined):
    result = joined.meshdex("sync", check=False)
    assert result.returncode == EXIT_CODES[EmbedderError], result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("): ok"), result.stdout
    assert "  web: received 1, sent 0, conflicts 0" in lines
    assert any(line.startswith("    index: failed: ") and "127.0.0.1:9" in line
               for line in lines), result.stdout
    assert "could not be synced" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(  # after the embedder's own warning
        "error: synced, but indexing what it brought failed for 'web' (see above)")
    assert "meshdex build -c web" in result.stderr
    assert joined.meshdex("docs", "-c", "web").stdout.count("page.md") == 1  # it arrived


def test_a_build_failing_after_a_good_sync_is_in_its_collections_json_report(joined):
    result = joined.meshdex("sync", "--json", check=False)
    assert result.returncode == EXIT_CODES[EmbedderError], result.stderr
    [report] = json.loads(result.stdout)
    [web] = report["collections"]
    assert report["error"] is None and (web["received"], web["error"]) == (1, None)
    assert (web["index"]["action"], web["index"]["error_kind"]) == ("failed", "EmbedderError")
    assert "127.0.0.1:9" in web["index"]["reason"]
