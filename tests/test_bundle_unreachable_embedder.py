"""A peer's bundle this device cannot use: what the receiver decides and says.

The desktop serves ``default`` built with the packaged model; the laptop made its ``default``
with an http embedder (here an address nothing listens on) and runs ``meshdex sync``. Before,
weighing the offer asked the laptop's embedder for its fingerprint, so the collection's whole
sync failed ("cannot reach the embedder", exit 12) on every session and no decision was
recorded, although the bundle names another model and can never be used here.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.sync_support import SyncServeProcess, write_jsonl

DOCS = {"boats.md": "A sailing boat needs wind; a rowing boat needs oars.",
        "fruit.md": "Apples and pears grow on trees in the orchard."}
SYNC_TIMEOUT_S = 300
pytestmark = pytest.mark.model


@pytest.fixture
def desktop(tmp_path: Path):
    desktop = SyncServeProcess(tmp_path / "desktop")
    desktop.meshdex("add", "--jsonl", write_jsonl(tmp_path / "docs.jsonl", DOCS))
    desktop.meshdex("build", timeout_s=SYNC_TIMEOUT_S)
    desktop.start()
    yield desktop
    desktop.stop(signal.SIGKILL)


def test_a_bundle_of_another_model_is_weighed_without_the_collections_embedder(
        desktop, tmp_path) -> None:
    laptop = SyncServeProcess(tmp_path / "laptop")
    laptop.meshdex("init", "--embedder", "http", "--embedder-url", "http://127.0.0.1:9",
                   "--embedder-model", "bge-small")
    laptop.meshdex("join", desktop.meshdex("invite").stdout.strip())
    result = laptop.meshdex("sync", "--json", check=False, timeout_s=SYNC_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    [report] = json.loads(result.stdout)
    [default] = report["collections"]
    assert default["received"] == 2 and default["error"] is None
    assert default["decision"] == "rebuild_locally", default
    assert "sentence-transformers/all-MiniLM-L6-v2" in default["reason"]
    assert "bge-small" in default["reason"]
    [decision, *_] = json.loads(laptop.meshdex("status", "--json").stdout)["decisions"]
    assert decision["decision"] == "rebuild_locally"


def test_keeping_its_own_index_does_not_say_it_is_rebuilding(desktop, tmp_path) -> None:
    """A laptop whose collection cuts passages otherwise, with its own index built: sync
    said "bundle: unchanged (...; rebuilding from the local documents)" while it kept its
    index and rebuilt nothing."""
    laptop = SyncServeProcess(tmp_path / "laptop")
    laptop.meshdex("init", "--max-chars", "300", "--overlap-chars", "20")
    laptop.meshdex("join", desktop.meshdex("invite").stdout.strip())
    [first] = json.loads(laptop.meshdex("sync", "--json", timeout_s=SYNC_TIMEOUT_S).stdout)
    assert first["collections"][0]["decision"] == "rebuild_locally"  # and built it here
    [report] = json.loads(laptop.meshdex("sync", "--json", timeout_s=SYNC_TIMEOUT_S).stdout)
    [default] = report["collections"]
    assert default["decision"] == "unchanged", default
    assert "max_chars: 1200 != 300" in default["reason"]
    assert "rebuilding" not in default["reason"]
    assert "own index is current and stays" in default["reason"]
