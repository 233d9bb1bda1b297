"""Peer sync with a device whose clock runs ahead, over real mutual TLS between real nodes.

Its changes are refused (a far-future stamp would win last-writer-wins against every honest
edit), the session says so and goes on with everything else, and raising
``sync_max_clock_skew_min`` on the receiver lets them in, in a serving node and in a one-shot
``meshdex sync``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.main import EXIT_CODES
from meshdex.node.hlc import wall_clock_ms

from tests.fakes import HashingEmbedder
from tests.sync_support import SyncNode, pair, start_sync_node, stop_sync_node

HOUR_MS = 3_600_000
LOCAL = EmbedderSpec()  # built with each node's fake, so each has a bundle to offer
REFUSED = (r"changes to 'notes' from store \w{8} refused for clock skew: document 'ahead' "
           r"carries an HLC stamp 2\.0 h ahead of this device's clock \(the limit is 5\.0 min")


def _start(root: Path, name: str, **overrides) -> SyncNode:
    node = start_sync_node(root, name, embedder=HashingEmbedder(), sync_interval_s=3600,
                           **overrides)
    node.service.scheduler.stop()  # sessions run when a test says so
    return node


def _run_clock_ahead(node: SyncNode, ahead_ms: int) -> None:
    """The device's wall clock runs ``ahead_ms`` fast: its HLC stamps every write so."""
    node.node.store._clock._wall_ms = lambda: wall_clock_ms() + ahead_ms


def _write(node: SyncNode, collection: str, docs: dict[str, str]) -> None:
    if not node.node.store.has_collection(collection):
        node.node.create_collection(collection, embedder=LOCAL)
    node.add(collection, docs)
    node.node.build(collection)


def _session(node: SyncNode, peer: SyncNode) -> dict:
    [report] = node.service.sync_now(peer.device_id)
    assert report.error is None, report.error
    return {c.collection: c for c in report.collections}


def _two_devices(root: Path, **a_overrides) -> tuple[SyncNode, SyncNode]:
    """A, and C whose clock runs 2 h ahead and which wrote 'ahead' in notes; paired, sharing
    notes and more, each holding a document of its own in notes."""
    a, c = _start(root, "a", **a_overrides), _start(root, "c")
    _run_clock_ahead(c, 2 * HOUR_MS)
    _write(a, "notes", {"from-a": "written on a, whose clock is right"})
    _write(a, "more", {"more-a": "another collection of a"})
    _write(c, "notes", {"ahead": "written on c, whose clock runs two hours ahead"})
    pair(a, c, ("notes", "more"))
    return a, c


def test_changes_stamped_ahead_are_refused_and_the_session_goes_on(tmp_path: Path) -> None:
    a, c = _two_devices(tmp_path)
    try:
        pulled = _session(a, c)
        notes = pulled["notes"]
        assert notes.error is not None
        _assert_says(notes.error, REFUSED)
        assert "sync_max_clock_skew_min" in notes.error  # the setting that lets it in
        _assert_says(notes.error, r"accepted in about 1\.9 h, when this device's clock "
                     r"reaches it")
        assert "ahead" not in a.texts("notes")  # the protection holds
        # The refusal stopped nothing else: a's changes went to c, the bundles were
        # exchanged, and the other collection synced.
        assert notes.sent == 1 and "from-a" in c.texts("notes")
        assert notes.decision is not None, notes
        assert pulled["more"].error is None and "more-a" in c.texts("more")
        assert a.service.trust.get(c.device_id).last_error.startswith("notes: changes")

        pushed = _session(c, a)["notes"]  # the same refusal, made by a, as c sees it
        _assert_says(pushed.error, r"^refused by .+?: " + REFUSED)
        assert pushed.decision is not None, pushed
        assert "ahead" not in a.texts("notes")
    finally:
        stop_sync_node(a)
        stop_sync_node(c)


def test_a_serving_node_allowing_more_skew_accepts_them(tmp_path: Path) -> None:
    a, c = _two_devices(tmp_path, sync_max_clock_skew_min=180.0)
    try:
        notes = _session(a, c)["notes"]
        assert notes.error is None and notes.received == 1
        assert a.texts("notes")["ahead"] == "written on c, whose clock runs two hours ahead"
    finally:
        stop_sync_node(a)
        stop_sync_node(c)


def _meshdex_sync(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "sync", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


def test_meshdex_sync_refuses_them_and_takes_the_setting(tmp_path: Path) -> None:
    a, c = _two_devices(tmp_path)
    stop_sync_node(a)  # `meshdex sync` opens a's store itself
    try:
        refused = _meshdex_sync(a.node.data_dir)
        assert refused.returncode == 12, refused.stderr  # the sync failed
        [report] = json.loads(refused.stdout)
        by_name = {item["collection"]: item for item in report["collections"]}
        _assert_says(by_name["notes"]["error"], REFUSED)
        assert by_name["more"]["error"] is None and "more-a" in c.texts("more")
        assert "from-a" in c.texts("notes")

        wrong = _meshdex_sync(a.node.data_dir, MESHDEX_SYNC_MAX_CLOCK_SKEW_MIN="0")
        assert wrong.returncode == EXIT_CODES[InvalidArgument], wrong.stderr
        assert "sync_max_clock_skew_min must be a number of minutes > 0" in wrong.stderr

        allowed = _meshdex_sync(a.node.data_dir, MESHDEX_SYNC_MAX_CLOCK_SKEW_MIN="180")
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        [report] = json.loads(allowed.stdout)
        assert [item["received"] for item in report["collections"]
                if item["collection"] == "notes"] == [1]
    finally:
        stop_sync_node(c)


def _assert_says(text: str | None, pattern: str) -> None:
    assert text is not None and re.search(pattern, text), text
