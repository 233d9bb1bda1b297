"""``meshdex build --on`` end to end: real ``meshdex serve`` processes, the real model, mTLS.

The desktop serves; the laptop runs through tests/counting_meshdex.py, which logs every call
of the real model. The laptop, embedded and through ``--node``, ends with a bundle that
verifies, is signed by the desktop, answers searches, and it embedded no passage for it;
refusals exit with the same code either way.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.counting_meshdex import LOG_ENV, embedded_passages
from tests.sync_support import SyncServeProcess, write_jsonl

COUNTING = (sys.executable, str(Path(__file__).with_name("counting_meshdex.py")))
LAPTOP_DOCS = {"boats.md": "A sailing boat needs wind; a rowing boat needs oars.",
               "bread.md": "Sourdough bread rises slowly overnight in a warm kitchen.",
               **{f"note{i}.md": f"Meeting note {i}: the budget for quarter {i % 4} was "
                  f"discussed at length." for i in range(12)}}
DESKTOP_DOCS = {"fruit.md": "Apples and pears grow on trees in the orchard."}

BUILD_TIMEOUT_S = 600  # the desktop loads the model and builds; slow on a loaded 2-core box
pytestmark = pytest.mark.model


class CountingServe(SyncServeProcess):
    """A ``SyncServeProcess`` whose model calls land in ``embed_log``; index_policy ``fetch``, as
    the README advises for a laptop that leaves building to a peer (with ``auto`` its own
    background build would index the documents it receives in the session)."""

    @property
    def embed_log(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.embeds")

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, LOG_ENV: str(self.embed_log), "MESHDEX_INDEX_POLICY": "fetch"}


@pytest.fixture
def devices(tmp_path: Path):
    desktop = SyncServeProcess(tmp_path / "desktop")
    laptop = CountingServe(tmp_path / "laptop", launcher=COUNTING)
    desktop.meshdex("add", "--jsonl", write_jsonl(tmp_path / "d.jsonl", DESKTOP_DOCS))
    laptop.meshdex("add", "--jsonl", write_jsonl(tmp_path / "l.jsonl", LAPTOP_DOCS))
    desktop.start()
    yield laptop, desktop
    for process in (laptop, desktop):
        process.stop(signal.SIGKILL)


def _pair(desktop: SyncServeProcess, laptop: SyncServeProcess, *args: str) -> str:
    laptop.meshdex("join", desktop.meshdex("invite", *args).stdout.strip())
    return desktop.meshdex("id").stdout.strip()


def _check_laptop_index(laptop: CountingServe, desktop_id: str, *node: str) -> None:
    assert embedded_passages(laptop.embed_log) == 0
    bundle = laptop.data_dir / "indexes" / "default.leann"
    inspected = json.loads(laptop.meshdex("bundle", "inspect", str(bundle), "--json").stdout)
    assert inspected["manifest"]["signer_device_id"] == desktop_id
    laptop.meshdex("bundle", "verify", str(bundle))
    hits = json.loads(laptop.meshdex(*node, "search", "what moves a sailing boat",
                                     "--json").stdout)["hits"]
    assert hits[0]["document_id"] == "boats.md"


def test_embedded_build_on_leaves_a_verified_index_built_by_the_desktop(devices):
    laptop, desktop = devices
    desktop_id = _pair(desktop, laptop)
    result = laptop.meshdex("build", "--on", desktop_id, "--json", timeout_s=BUILD_TIMEOUT_S)
    report = json.loads(result.stdout)
    # the desktop's own debounced build after the sync may get there first: then it is current
    assert report["peer"] == desktop_id and report["action"] in ("built", "unchanged")
    assert report["sent"] == len(LAPTOP_DOCS) and report["received"] == len(DESKTOP_DOCS)
    assert report["passages"] >= len(LAPTOP_DOCS) + len(DESKTOP_DOCS)
    assert report["decision"] == "use" and report["bundle_bytes_fetched"] > 0
    _check_laptop_index(laptop, desktop_id)


def test_build_on_through_node_prints_the_same_and_embeds_nothing_there(devices):
    laptop, desktop = devices
    desktop_id = _pair(desktop, laptop)
    laptop.start()
    result = laptop.meshdex("--node", laptop.node_address, "build", "--on", desktop_id,
                            timeout_s=BUILD_TIMEOUT_S)
    assert re.search(r"(built|unchanged) generation \d+ on ", result.stdout), result.stdout
    # the serving laptop's own session (policy fetch) may install the desktop's bundle first
    assert re.search(r"bundle: (use|unchanged) \(", result.stdout), result.stdout
    assert "synced first: sent" in result.stdout
    _check_laptop_index(laptop, desktop_id, "--node", laptop.node_address)


REFUSALS = [
    # (id, invite flags on the desktop, the peer named, message words)
    ("read-only-pairing", ("--read-only",), None, "read-only"),
    ("unknown-peer", (), "nobody", "nobody"),
    ("unshared-collection", ("--collections", "other"), None, "not shared"),
]


@pytest.mark.parametrize(("invite", "peer", "words"), [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])
def test_refusals_exit_the_same_embedded_and_through_node(devices, invite, peer, words):
    laptop, desktop = devices
    desktop_id = _pair(desktop, laptop, *invite)
    embedded = laptop.meshdex("build", "--on", peer or desktop_id, check=False)
    laptop.start()
    remote = laptop.meshdex("--node", laptop.node_address, "build", "--on", peer or desktop_id,
                            check=False)
    assert embedded.returncode == remote.returncode not in (0, 1), (embedded, remote)
    for result in (embedded, remote):
        assert words in result.stderr and "Traceback" not in result.stderr
    assert not (laptop.data_dir / "indexes" / "default.leann").exists()
    assert embedded_passages(laptop.embed_log) == 0
