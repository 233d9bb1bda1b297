"""Stamps from the future are refused (issue 8, item 6): ``check_not_ahead`` on its own, and a
bundle whose documents section was rewritten with a stamp days ahead (hashes recomputed, so it
verifies whole) is refused on import without changing the real store."""

from __future__ import annotations

import pytest
from fakes import HashingEmbedder
from meshdex.index.bundle_documents import decode_documents, encode_documents
from meshdex.index.bundle_io import copy_bundle, open_bundle
from meshdex.index.errors import BundleError
from meshdex.node.bundle_transfer import export_bundle, import_bundle
from meshdex.node.errors import ClockSkew
from meshdex.node.hlc import (
    DEFAULT_MAX_CLOCK_SKEW_MS,
    HLCTimestamp,
    check_not_ahead,
    wall_clock_ms,
)
from meshdex.node.indexing import IndexManager
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node
from meshdex.node.store import Store

NOW_MS = 1_800_000_000_000
DAY_MS = 86_400_000


@pytest.mark.parametrize(("ahead_ms", "max_skew_ms", "refused"), [
    (-DAY_MS, DEFAULT_MAX_CLOCK_SKEW_MS, False),  # the past is always fine
    (DEFAULT_MAX_CLOCK_SKEW_MS, DEFAULT_MAX_CLOCK_SKEW_MS, False),
    (DEFAULT_MAX_CLOCK_SKEW_MS + 1, DEFAULT_MAX_CLOCK_SKEW_MS, True),
    (int(11.6 * DAY_MS), DEFAULT_MAX_CLOCK_SKEW_MS, True),
    (int(11.6 * DAY_MS), 12 * DAY_MS, False),  # configurable
])
def test_check_not_ahead(ahead_ms, max_skew_ms, refused):
    stamp = HLCTimestamp(physical_ms=NOW_MS + ahead_ms, logical=0, device_id="peer")
    if refused:
        with pytest.raises(ClockSkew, match="ahead of this device's clock"):
            check_not_ahead(stamp, what="change", max_skew_ms=max_skew_ms, now_ms=NOW_MS)
    else:
        assert check_not_ahead(stamp, what="change", max_skew_ms=max_skew_ms,
                               now_ms=NOW_MS) is stamp


def _node(data_dir) -> Node:
    store = Store.open(data_dir)
    return Node(store, indexes=IndexManager(store, embedder_factory=lambda _: HashingEmbedder()))


@pytest.fixture
def future_bundle(tmp_path):
    """A verified bundle whose document 'shared' carries a stamp 11.6 days ahead."""
    with _node(tmp_path / "forger") as forger:
        forger.create_collection("docs")
        forger.upsert_documents("docs", [DocumentInput(id="shared", text="forged text wins")])
        forger.build("docs")
        export_bundle(forger, "docs", tmp_path / "honest.leann", with_documents=True)
    with open_bundle(tmp_path / "honest.leann") as honest:
        records = list(decode_documents(honest.section("documents")))
        for record in records:
            stamp = HLCTimestamp.from_str(record["hlc"])
            record["hlc"] = HLCTimestamp(physical_ms=wall_clock_ms() + int(11.6 * DAY_MS),
                                         logical=0, device_id=stamp.device_id).to_str()
        copy_bundle(honest, tmp_path / "future.leann",
                    add_sections={"documents": encode_documents(records)})
    with open_bundle(tmp_path / "future.leann", verify="full"):
        pass  # verifies whole: only the clock check can refuse it
    return tmp_path / "future.leann"


def test_a_bundle_stamped_days_ahead_is_refused_and_changes_nothing(tmp_path, future_bundle):
    with _node(tmp_path / "here") as node:
        node.create_collection("docs")
        node.upsert_documents("docs", [DocumentInput(id="shared", text="my honest edit")])
        with pytest.raises(BundleError, match=r"document 'shared' carries an HLC stamp "
                           r"11\.6 days ahead of this device's clock \(the limit is 5\.0 min"):
            import_bundle(node, future_bundle)
        assert node.get_document("docs", "shared").text == "my honest edit"
        assert node.store.max_hlc.physical_ms < wall_clock_ms() + DEFAULT_MAX_CLOCK_SKEW_MS


def test_more_skew_can_be_allowed(tmp_path, future_bundle):
    with _node(tmp_path / "here") as node:
        report = import_bundle(node, future_bundle, max_clock_skew_ms=12 * DAY_MS)
        assert report.documents_merged == 1
        assert node.get_document("docs", "shared").text == "forged text wins"
