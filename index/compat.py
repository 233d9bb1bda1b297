"""Whether a bundle can be used here: one pure function from (manifest, local state) to a decision.

A bundle copied from another device may come from another collection, a newer meshdex, a
different model (or the same model name with different weights — the silent drift LEANN cannot
see, caught here by the model hash), unknown build params, or a store older or newer than the
local one. ``decide_compatibility`` weighs all of that and says what to do and why, in words a
person can read; callers (import, sync, build) carry the decision out and log it.

Precedence, first match wins for the kind::

    other collection, newer format            -> refuse
    older unreadable format, fingerprint,
    chunking or build params this build
    cannot honour                             -> rebuild_locally
    local store has changes the bundle lacks  -> apply_local_delta
    cache built with another fingerprint      -> use_drop_cache
    otherwise                                 -> use

``drop_cache`` and ``documents_missing`` are reported alongside the kind, so a delta applied to
a bundle whose cache is stale also drops the cache, and a bundle that indexes documents this
store has not received yet says so instead of serving holes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from meshdex.index.bundle_manifest import SUPPORTED_FORMAT_VERSIONS, BundleManifest, StoreState
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.params import BuildParams

__all__ = [
    "Decision",
    "DecisionKind",
    "LocalState",
    "compare_store_states",
    "decide_compatibility",
    "decide_by_model",
]

DOCUMENTS_SECTION = "documents"
REBUILDING_REASON = "rebuilding from the local documents"


class DecisionKind(enum.StrEnum):
    """What to do with a bundle, from least to most work (``refuse`` does nothing)."""

    USE = "use"
    USE_DROP_CACHE = "use_drop_cache"
    APPLY_LOCAL_DELTA = "apply_local_delta"
    REBUILD_LOCALLY = "rebuild_locally"
    REFUSE = "refuse"


@dataclass(frozen=True, kw_only=True)
class LocalState:
    """What this device has: the collection, its embedder, what it reads, and its store.

    ``chunking`` is how this collection cuts documents into passages; a bundle whose passages
    were cut otherwise indexes passages this store does not have. ``known_build_param_keys``
    are the build parameter names this build understands (by default ``BuildParams``' fields);
    a bundle built with any other key was built by code whose behaviour this build cannot
    reproduce when it adds to the graph.
    """

    collection: str
    fingerprint: EmbeddingFingerprint
    store_state: StoreState
    known_build_param_keys: frozenset[str] = field(
        default_factory=lambda: frozenset(f.name for f in fields(BuildParams))
    )
    supported_format_versions: frozenset[int] = field(
        default_factory=lambda: SUPPORTED_FORMAT_VERSIONS
    )
    chunking: Mapping[str, Any] | None = None  # the collection's ChunkingParams as a dict


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The verdict and the reasons for it, one sentence each.

    ``drop_cache``: the hot cache must not be used. ``documents_missing``: the bundle indexes
    changes this store lacks and carries no documents; results may point at passages that are
    not here until the documents arrive.
    """

    kind: DecisionKind
    reasons: tuple[str, ...]
    drop_cache: bool = False
    documents_missing: bool = False

    def summary(self) -> str:
        """One line for a CLI or a log: the kind, then the reasons."""
        return f"{self.kind.value}: " + "; ".join(self.reasons)


def _format_reasons(manifest: BundleManifest, local: LocalState) -> tuple[DecisionKind, str] | None:
    version = manifest.format_version
    if version in local.supported_format_versions:
        return None
    readable = ", ".join(str(v) for v in sorted(local.supported_format_versions))
    if version > max(local.supported_format_versions):
        return (
            DecisionKind.REFUSE,
            f"bundle format version {version} is newer than this meshdex reads "
            f"(format version {readable}); upgrade meshdex here",
        )
    return (
        DecisionKind.REBUILD_LOCALLY,
        f"bundle format version {version} is older than this meshdex reads "
        f"(format version {readable}); rebuilding from the local documents",
    )


def _fingerprint_reason(bundle: EmbeddingFingerprint, local: EmbeddingFingerprint) -> str | None:
    if bundle == local:
        return None
    if bundle.model_id == local.model_id and bundle.model_hash != local.model_hash:
        return (
            f"model {bundle.model_id} has different weights here (model hash "
            f"{bundle.model_hash[:12]} in the bundle, {local.model_hash[:12]} here): its "
            "vectors would not match the graph"
        )
    return "the bundle was embedded differently: " + ", ".join(bundle.differences(local))


SHORT_DEVICE_CHARS = 8  # as `meshdex status` and `conflicts` show a store id


def compare_store_states(
    bundle: StoreState, local: StoreState
) -> tuple[list[str], list[str]]:
    """(devices where the local store is ahead, devices where the bundle is ahead), as text
    such as ``"1a2b3c4d up to change 130 (bundle has 120)"``, each device by the first
    ``SHORT_DEVICE_CHARS`` of its store id (a 32-hex id made `status` hard to read); both
    empty when they agree."""
    local_ahead, bundle_ahead = [], []
    for device in sorted(set(bundle.seq_watermarks) | set(local.seq_watermarks)):
        theirs = bundle.seq_watermarks.get(device, 0)
        mine = local.seq_watermarks.get(device, 0)
        short = device[:SHORT_DEVICE_CHARS]
        if mine > theirs:
            local_ahead.append(f"{short} up to change {mine} (bundle has {theirs})")
        elif theirs > mine:
            bundle_ahead.append(f"{short} up to change {theirs} (store has {mine})")
    return local_ahead, bundle_ahead


def _chunking_reason(manifest: BundleManifest, local: LocalState) -> str | None:
    theirs = manifest.collection_config.get("chunking")
    if not isinstance(theirs, Mapping) or local.chunking is None:
        return None
    differences = [
        f"{key}: {theirs.get(key)} != {local.chunking.get(key)}"
        for key in sorted(set(theirs) | set(local.chunking))
        if theirs.get(key) != local.chunking.get(key)
    ]
    if not differences:
        return None
    return "the bundle's passages were cut differently: " + ", ".join(differences)


def _unknown_params(params: Mapping[str, object], known: frozenset[str]) -> list[str]:
    return sorted(set(params) - known)


def decide_compatibility(manifest: BundleManifest, local: LocalState) -> Decision:
    """Decide what to do with a bundle on this device; pure (no I/O, no clock).

    The manifest must already have passed ``check_manifest`` (``open_bundle`` and
    ``manifest_from_bytes`` guarantee it).
    """
    if manifest.collection != local.collection:
        return Decision(
            kind=DecisionKind.REFUSE,
            reasons=(
                f"bundle is for collection {manifest.collection!r}, not {local.collection!r}",
            ),
        )
    format_verdict = _format_reasons(manifest, local)
    if format_verdict is not None:
        kind, reason = format_verdict
        return Decision(kind=kind, reasons=(reason,))

    rebuild_reasons = []
    fingerprint_reason = _fingerprint_reason(manifest.fingerprint, local.fingerprint)
    if fingerprint_reason is not None:
        rebuild_reasons.append(fingerprint_reason)
    chunking_reason = _chunking_reason(manifest, local)
    if chunking_reason is not None:
        rebuild_reasons.append(chunking_reason)
    unknown = _unknown_params(manifest.build_params, local.known_build_param_keys)
    if unknown:
        rebuild_reasons.append(
            f"bundle was built with parameters this meshdex does not know: {', '.join(unknown)}"
        )
    if rebuild_reasons:
        return Decision(
            kind=DecisionKind.REBUILD_LOCALLY,
            reasons=(*rebuild_reasons, REBUILDING_REASON),
        )

    reasons: list[str] = []
    drop_cache = (
        manifest.cache is not None
        and manifest.cache.fingerprint_digest != manifest.fingerprint.digest()
    )
    if drop_cache:
        reasons.append(
            "the hot cache was filled by a different embedder than the graph: dropping it"
        )
    local_ahead, bundle_ahead = compare_store_states(manifest.store_state, local.store_state)
    if local_ahead:
        reasons.append("local store has changes the bundle lacks: " + "; ".join(local_ahead))
    documents_missing = bool(bundle_ahead) and DOCUMENTS_SECTION not in manifest.section_names
    if bundle_ahead:
        ahead = f"bundle indexes changes this store has not received ({'; '.join(bundle_ahead)})"
        reasons.append(
            f"{ahead}: documents missing here until they arrive by sync, or import a bundle "
            "exported --with-documents"
            if documents_missing
            else f"{ahead}; it carries the documents"
        )
    if local_ahead:
        kind = DecisionKind.APPLY_LOCAL_DELTA
    elif drop_cache:
        kind = DecisionKind.USE_DROP_CACHE
    else:
        kind = DecisionKind.USE
    if not reasons:
        reasons.append("same collection, embedder, build params and store state")
    return Decision(
        kind=kind,
        reasons=tuple(reasons),
        drop_cache=drop_cache,
        documents_missing=documents_missing,
    )


def decide_by_model(manifest: BundleManifest, model_id: str) -> Decision | None:
    """The decision the bundle's model alone settles, for a collection whose embedder cannot
    tell its fingerprint now (an http server that is down): a bundle embedded with another
    model is rebuilt locally whatever the rest; None when the models agree (undecidable)."""
    if manifest.fingerprint.model_id == model_id:
        return None
    return Decision(kind=DecisionKind.REBUILD_LOCALLY, reasons=(
        f"the bundle was embedded with {manifest.fingerprint.model_id}, this collection "
        f"embeds with {model_id}", REBUILDING_REASON))
