"""The compatibility decision: one table row per situation a received bundle can be in."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from bundle_samples import BUILD_PARAMS, CHUNKING, FINGERPRINT, make_manifest, small_sections
from meshdex.index.bundle_io import open_bundle, write_bundle
from meshdex.index.bundle_manifest import CacheManifest, SectionEntry, StoreState
from meshdex.index.compat import DecisionKind, LocalState, decide_compatibility
from meshdex.index.params import BuildParams

BUNDLE_STORE = make_manifest().store_state  # laptop: 120, desktop: 40
OTHER_FINGERPRINT = replace(FINGERPRINT, precision="bf16")
DOCUMENTS = SectionEntry(name="documents", offset=4096, length=1, sha256=bytes(32))


def local_state(**overrides) -> LocalState:
    """This device, matching the sample bundle exactly unless overridden."""
    state = LocalState(
        collection="notes",
        fingerprint=FINGERPRINT,
        store_state=BUNDLE_STORE,
        known_build_param_keys=frozenset(BUILD_PARAMS),
        supported_format_versions=frozenset({1}),
        chunking=CHUNKING,
    )
    return replace(state, **overrides)


def store(**watermarks: int) -> StoreState:
    return replace(BUNDLE_STORE, seq_watermarks=watermarks)


# (case, bundle overrides, local overrides, kind, drop_cache, documents_missing, phrase)
CASES = [
    ("same fingerprint and store state", {}, {}, "use", False, False, "same collection"),
    (
        "local documents newer",
        {}, {"store_state": store(laptop=130, desktop=40)},
        "apply_local_delta", False, False, "laptop up to change 130 (bundle has 120)",
    ),
    (
        "local store has a device the bundle never saw",
        {}, {"store_state": store(laptop=120, desktop=40, phone=3)},
        "apply_local_delta", False, False, "phone up to change 3 (bundle has 0)",
    ),
    (
        "a store id is shown short, as status shows it",
        {}, {"store_state": store(laptop=120, desktop=40, **{"9f3c1a2b" + "0" * 24: 3})},
        "apply_local_delta", False, False, "lacks: 9f3c1a2b up to change 3 (bundle has 0)",
    ),
    (
        "local documents older: documents missing",
        {}, {"store_state": store(laptop=100, desktop=40)},
        "use", False, True, "laptop up to change 120 (store has 100)): documents missing here",
    ),
    (
        "local documents older, bundle carries them",
        {"sections": (DOCUMENTS,)}, {"store_state": store(laptop=100, desktop=40)},
        "use", False, False, "carries the documents",
    ),
    (
        "diverged: each side has changes the other lacks",
        {}, {"store_state": store(laptop=100, desktop=41)},
        "apply_local_delta", False, True, "desktop up to change 41 (bundle has 40)",
    ),
    (
        "cache built with another fingerprint than the graph",
        {"cache": CacheManifest(node_count=5, fingerprint_digest=OTHER_FINGERPRINT.digest())}, {},
        "use_drop_cache", True, False, "hot cache was filled by a different embedder",
    ),
    (
        "stale cache and local documents newer",
        {"cache": CacheManifest(node_count=5, fingerprint_digest=OTHER_FINGERPRINT.digest())},
        {"store_state": store(laptop=121, desktop=40)},
        "apply_local_delta", True, False, "hot cache",
    ),
    ("no cache at all", {"cache": None}, {}, "use", False, False, "same collection"),
    (
        "same model name, different weights (silent drift)",
        {}, {"fingerprint": replace(FINGERPRINT, model_hash="b" * 64)},
        "rebuild_locally", False, False, "has different weights here (model hash aaaaaaaaaaaa",
    ),
    (
        "dimension differs",
        {}, {"fingerprint": replace(FINGERPRINT, model_id="other/model", dim=768)},
        "rebuild_locally", False, False, "dim: 384 != 768",
    ),
    (
        "metric differs",
        {}, {"fingerprint": replace(FINGERPRINT, metric="l2")},
        "rebuild_locally", False, False, "metric: cosine != l2",
    ),
    (
        "precision differs",
        {}, {"fingerprint": OTHER_FINGERPRINT},
        "rebuild_locally", False, False, "precision: fp32 != bf16",
    ),
    (
        "format version newer",
        {"format_version": 2}, {},
        "refuse", False, False,
        "bundle format version 2 is newer than this meshdex reads (format version 1)",
    ),
    (
        "format version older, still supported",
        {"format_version": 1}, {"supported_format_versions": frozenset({1, 2})},
        "use", False, False, "same collection",
    ),
    (
        "format version older, no longer supported",
        {"format_version": 1}, {"supported_format_versions": frozenset({2, 3})},
        "rebuild_locally", False, False, "format version 1 is older than this meshdex reads",
    ),
    (
        "build params unknown here",
        {"build_params": {**BUILD_PARAMS, "quantizer": "opq", "levels": 2}}, {},
        "rebuild_locally", False, False, "does not know: levels, quantizer",
    ),
    (
        "bundle leaves out params this build knows (defaults apply)",
        {"build_params": {"M": 16}}, {},
        "use", False, False, "same collection",
    ),
    (
        "passages cut with other chunking params",
        {}, {"chunking": {**CHUNKING, "max_chars": 800}},
        "rebuild_locally", False, False, "passages were cut differently: max_chars: 1200 != 800",
    ),
    (
        "bundle that does not say how it cut passages",
        {"collection_config": {}}, {"chunking": {**CHUNKING, "max_chars": 800}},
        "use", False, False, "same collection",
    ),
    (
        "bundle from another collection",
        {"collection": "recipes"}, {},
        "refuse", False, False, "bundle is for collection 'recipes', not 'notes'",
    ),
    (
        "another collection wins over every other problem",
        {"collection": "recipes", "format_version": 9}, {"fingerprint": OTHER_FINGERPRINT},
        "refuse", False, False, "collection 'recipes'",
    ),
]


@pytest.mark.parametrize(
    ("bundle", "local", "kind", "drop_cache", "documents_missing", "phrase"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_compatibility_table(bundle, local, kind, drop_cache, documents_missing, phrase):
    decision = decide_compatibility(make_manifest(**bundle), local_state(**local))
    assert decision.kind == DecisionKind(kind)
    assert decision.drop_cache is drop_cache
    assert decision.documents_missing is documents_missing
    assert phrase in decision.summary()
    assert decision.summary().startswith(f"{kind}: ")


def test_rebuild_reasons_list_every_problem_and_say_what_happens():
    decision = decide_compatibility(
        make_manifest(build_params={**BUILD_PARAMS, "levels": 2}),
        local_state(fingerprint=replace(FINGERPRINT, model_hash="c" * 64)),
    )
    assert decision.kind is DecisionKind.REBUILD_LOCALLY
    assert len(decision.reasons) == 3
    assert decision.reasons[-1] == "rebuilding from the local documents"


def test_by_default_this_build_knows_exactly_the_engine_build_params():
    local = LocalState(collection="notes", fingerprint=FINGERPRINT, store_state=BUNDLE_STORE)
    engine_params = BuildParams().to_dict()
    assert decide_compatibility(make_manifest(build_params=engine_params), local).kind is (
        DecisionKind.USE
    )
    decision = decide_compatibility(
        make_manifest(build_params={**engine_params, "graph_layers": 3}), local
    )
    assert decision.kind is DecisionKind.REBUILD_LOCALLY
    assert "does not know: graph_layers" in decision.summary()


def test_decision_on_a_bundle_read_back_from_disk(tmp_path: Path):
    path = tmp_path / "notes.leann"
    sections = {**small_sections(), "documents": b"compressed documents"}
    write_bundle(path, make_manifest(), sections)
    with open_bundle(path) as bundle:
        manifest = bundle.manifest
    assert manifest.section_entry("documents").sha256 == hashlib.sha256(
        b"compressed documents"
    ).digest()
    decision = decide_compatibility(manifest, local_state(store_state=store(laptop=1)))
    assert decision.kind is DecisionKind.USE
    assert not decision.documents_missing
    assert "carries the documents" in decision.summary()
