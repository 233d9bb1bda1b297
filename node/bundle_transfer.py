"""Moving a collection's index between devices as one ``.leann`` file: export and import.

Export copies the collection's current bundle (``IndexManager.bundle_path``), records how the
collection cuts and embeds passages, and with ``with_documents`` adds a ``documents`` section:
the last change of every document (text for live ones, a tombstone for deleted ones) with its
HLC stamp and origin, so the receiver merges them exactly as sync would (last writer wins).

Import verifies the whole file, creates the collection if this device has none (from the
recorded config), merges carried documents, asks ``decide_compatibility`` what to do and does
it: install the bundle (dropping a stale cache), install it and apply the local delta, or
rebuild from the local documents. A bundle that indexes passages this store lacks is installed
(search skips passages it cannot resolve) and the report says how many are missing and why.

``plan_import`` works out the same decision and action without changing anything (``bundle
import --dry-run``): it merges the carried documents' watermarks into the store state in
memory, the only part of the merge the decision reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from meshdex.index.bundle_documents import decode_documents, encode_documents
from meshdex.index.bundle_io import Bundle, copy_bundle, open_bundle
from meshdex.index.bundle_manifest import BundleManifest, StoreState
from meshdex.index.chunking import ChunkingParams, passage_label
from meshdex.index.compat import (
    Decision,
    DecisionKind,
    LocalState,
    compare_store_states,
    decide_compatibility,
)
from meshdex.index.embedders import EmbedderSpec, embedder_from_spec
from meshdex.index.engine import Index
from meshdex.index.errors import BundleCorrupt, BundleError, FailedPrecondition, IndexNotBuilt
from meshdex.index.params import BuildParams
from meshdex.node.errors import ClockSkew, CollectionNotFound
from meshdex.node.hlc import DEFAULT_MAX_CLOCK_SKEW_MS, HLCTimestamp, check_not_ahead
from meshdex.node.indexing import collection_config, store_state_of
from meshdex.node.records import ChangeOp, CollectionInfo, RemoteChange
from meshdex.node.service import Node

__all__ = [
    "ExportReport",
    "ImportReport",
    "collection_config",
    "describe_import",
    "export_bundle",
    "import_bundle",
    "local_state",
    "plan_import",
]

logger = logging.getLogger(__name__)

DOCUMENTS_SECTION = "documents"
LOCAL_EMBEDDER_KIND = "local"
MERGE_BATCH_DOCUMENTS = 500  # documents per store transaction on import

Progress = Callable[[str, int, int], None]  # (phase, done, total), as Node.build takes


@dataclass(frozen=True, kw_only=True)
class ExportReport:
    """What ``export_bundle`` wrote."""

    collection: str
    path: Path
    generation: int
    bundle_bytes: int
    documents: int | None  # None: exported without documents
    stale: str | None  # why the index lags the store, if it does

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    """What ``import_bundle`` decided and did, or with ``dry_run`` what it would (``plan_import``):
    a dry run's ``generation`` is the installed one it would keep, else None (a new generation
    is numbered only when it is written)."""

    collection: str
    decision: Decision
    # "installed" | "installed+delta" | "rebuilt" | "kept" | "kept+delta"; a dry run: "refused"
    action: str
    created_collection: bool
    documents_merged: int
    passages_missing: int
    generation: int | None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "decision": self.decision.kind.value,
            "reasons": list(self.decision.reasons),
            "drop_cache": self.decision.drop_cache,
            "action": self.action,
            "created_collection": self.created_collection,
            "documents_merged": self.documents_merged,
            "passages_missing": self.passages_missing,
            "generation": self.generation,
            "dry_run": self.dry_run,
        }


def local_state(node: Node, info: CollectionInfo) -> LocalState:
    """This device's side of the compatibility decision for one collection (loads the
    collection's embedder to learn its fingerprint)."""
    return LocalState(
        collection=info.name,
        fingerprint=node.indexes.embedder_for(info).fingerprint,
        store_state=store_state_of(node.store, info.name),
        chunking=info.chunking.to_dict(),
    )


def _document_records(node: Node, collection: str) -> Iterator[dict[str, Any]]:
    """The last change of every document, with the text of live ones, sorted by id."""
    last = {change.doc_id: change for change in node.store.changes_since(0, collection=collection)}
    live = {doc.id: doc for doc in node.store.iter_documents(collection)}
    for doc_id in sorted(last):
        change = last[doc_id]
        record: dict[str, Any] = {
            "id": doc_id,
            "op": change.op.value,
            "hlc": change.hlc.to_str(),
            "origin_device": change.origin_device,
            "origin_seq": change.origin_seq,
        }
        document = live.get(doc_id)
        if change.op is ChangeOp.UPSERT and document is not None:
            record.update(text=document.text, metadata=document.metadata, source=document.source)
        yield record


def export_bundle(
    node: Node, collection: str, path: Path, *, with_documents: bool = False
) -> ExportReport:
    """Write the collection's current index to ``path`` (atomically), optionally with its
    documents. Raises ``IndexNotBuilt`` before the first build, ``BundleCorrupt`` if the
    installed bundle is damaged (nothing is written then)."""
    info = node.get_collection(collection)
    source_path = node.indexes.bundle_path(collection)
    if not source_path.exists():
        raise IndexNotBuilt(
            f"collection {collection!r} has no index to export yet",
            hint=f"run: meshdex build --collection {collection}",
        )
    documents = None
    added = {}
    if with_documents:
        records = list(_document_records(node, collection))
        documents = len(records)
        added[DOCUMENTS_SECTION] = encode_documents(records)
    with open_bundle(source_path, verify="lazy") as source:
        written = copy_bundle(
            source, Path(path), add_sections=added,
            manifest_changes={"collection_config": collection_config(info)},
        )
    local_ahead, _ = compare_store_states(
        written.store_state, store_state_of(node.store, collection)
    )
    stale = None
    if local_ahead:
        stale = (
            "the index is older than the documents (" + "; ".join(local_ahead) + "): run "
            f"meshdex build --collection {collection} first to include them"
        )
    return ExportReport(
        collection=collection, path=Path(path), generation=written.generation,
        bundle_bytes=Path(path).stat().st_size, documents=documents, stale=stale,
    )


def _remote_change(record: dict[str, Any]) -> RemoteChange:
    try:
        op = ChangeOp(record["op"])
        return RemoteChange(
            doc_id=record["id"],
            op=op,
            hlc=HLCTimestamp.from_str(record["hlc"]),
            origin_device=record["origin_device"],
            origin_seq=int(record["origin_seq"]),
            text=record.get("text") if op is ChangeOp.UPSERT else None,
            metadata=record.get("metadata") or {},
            source=record.get("source"),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BundleCorrupt(
            f"documents section holds a malformed record ({error!r})", op="import bundle"
        ) from error


def _carried_changes(bundle: Bundle, max_clock_skew_ms: int) -> list[RemoteChange] | None:
    """Every carried change (None: the bundle carries no documents), checked before any is
    merged: a bundle with one stamp too far ahead is refused whole (``BundleError``), changing
    nothing."""
    if not bundle.has_section(DOCUMENTS_SECTION):
        return None
    changes = [_remote_change(record)
               for record in decode_documents(bundle.section(DOCUMENTS_SECTION))]
    for change in changes:
        try:
            check_not_ahead(change.hlc, what=f"document {change.doc_id!r}",
                            max_skew_ms=max_clock_skew_ms, setting="--max-clock-skew-min")
        except ClockSkew as error:
            raise BundleError(f"bundle refused: {error.message}", op="import bundle",
                              hint=error.hint) from error
    return changes


def _merge_documents(node: Node, collection: str, changes: list[RemoteChange]) -> int:
    """Merge the carried documents by last-writer-wins; return how many changed the store."""
    merged = 0
    for start in range(0, len(changes), MERGE_BATCH_DOCUMENTS):
        batch = changes[start:start + MERGE_BATCH_DOCUMENTS]
        merged += sum(node.store.apply_remote_changes(collection, batch))
    return merged


def _passage_labels(node: Node, collection: str) -> set[int]:
    return {passage_label(key) for key, _ in node.store.iter_passages(collection)}


def _missing_passages(bundle: Bundle, present: set[int]) -> int:
    """How many passages the bundle indexes whose labels are not in ``present``."""
    manifest = bundle.manifest
    index = Index.from_sections(
        bundle.sections(),
        fingerprint=manifest.fingerprint,
        params=BuildParams.from_dict(dict(manifest.build_params)),
    )
    return sum(1 for label in index.labels().tolist() if label not in present)


def _existing_collection(node: Node, name: str) -> CollectionInfo | None:
    try:
        return node.get_collection(name)
    except CollectionNotFound:
        return None


def _creation_config(manifest: BundleManifest) -> tuple[EmbedderSpec, ChunkingParams]:
    """How to create the bundle's collection on a device that lacks it, from the config the
    bundle records: ``CollectionNotFound`` when it records none, ``FailedPrecondition`` for a
    network embedder."""
    config = manifest.collection_config
    if "embedder" not in config or "chunking" not in config:
        raise CollectionNotFound.named(manifest.collection)
    embedder = EmbedderSpec.from_dict(config["embedder"])
    if embedder.kind != LOCAL_EMBEDDER_KIND:
        # Passage text would leave this device: network embedders are opt-in, never implied
        # by a file that arrived from elsewhere.
        raise FailedPrecondition(
            f"collection {manifest.collection!r} does not exist here and the bundle's collection "
            f"embeds with a {embedder.kind} embedder ({embedder.url}), which would send passage "
            "text off this device",
            op="import bundle",
            hint=f"create it yourself to opt in: meshdex init --collection "
            f"{manifest.collection} --embedder {embedder.kind} --embedder-url URL",
        )
    return embedder, ChunkingParams.from_dict(dict(config["chunking"]))


def _collection_for(node: Node, manifest: BundleManifest) -> tuple[CollectionInfo, bool]:
    info = _existing_collection(node, manifest.collection)
    if info is not None:
        return info, False
    embedder, chunking = _creation_config(manifest)
    info = node.create_collection(manifest.collection, embedder=embedder, chunking=chunking)
    logger.info("created collection %s from bundle config", manifest.collection)
    return info, True


def import_bundle(
    node: Node,
    path: Path,
    *,
    progress: Progress | None = None,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> ImportReport:
    """Verify ``path`` fully, then use, delta-update or rebuild the collection's index from it.

    Raises ``BundleCorrupt``/``BundleVersionError`` for a damaged or unreadable file (nothing
    changes), ``BundleError`` when the decision is to refuse, ``CollectionNotFound`` when the
    collection is missing here and the bundle does not say how to create it; a carried stamp
    more than ``max_clock_skew_ms`` ahead of this device's clock refuses the bundle (nothing
    changes). Runs while holding
    the collection's build lock, so no build of it interleaves; the installed bundle gets this
    device's next generation.
    """
    with open_bundle(path, verify="full") as bundle:
        return import_verified(node, bundle, path, progress=progress,
                               max_clock_skew_ms=max_clock_skew_ms)


def import_verified(
    node: Node,
    bundle: Bundle,
    path: Path,
    *,
    progress: Progress | None = None,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> ImportReport:
    """``import_bundle`` of a bundle the caller opened with ``verify="full"``: so a caller can
    refuse a damaged file before it opens (and maybe creates) the store."""
    with node.indexes.exclusive(bundle.manifest.collection):
        return _import(node, bundle, path, progress, max_clock_skew_ms)


def _import(node: Node, bundle: Bundle, path: Path, progress: Progress | None,
            max_clock_skew_ms: int) -> ImportReport:
    manifest = bundle.manifest
    changes = _carried_changes(bundle, max_clock_skew_ms)
    info, created = _collection_for(node, manifest)
    decision = decide_compatibility(manifest, local_state(node, info))
    if decision.kind is DecisionKind.REFUSE:
        node.indexes.decisions.append(collection=info.name, trigger="import",
                                      decision=decision.kind.value,
                                      reasons=decision.reasons)
        raise BundleError(
            "bundle refused: " + "; ".join(decision.reasons), op="import bundle", path=path
        )
    merged = 0
    if changes is not None:
        merged = _merge_documents(node, info.name, changes)
        decision = decide_compatibility(manifest, local_state(node, info))
    node.indexes.decisions.append(collection=info.name, trigger="import",
                                  decision=decision.kind.value, reasons=decision.reasons,
                                  generation=manifest.generation)
    if decision.kind is DecisionKind.REBUILD_LOCALLY:
        report = node.build(info.name, rebuild=True, progress=progress)
        return ImportReport(
            collection=info.name, decision=decision, action="rebuilt",
            created_collection=created, documents_merged=merged, passages_missing=0,
            generation=report.generation,
        )
    current = node.indexes.manifest(info.name)
    if _covers(current, manifest):  # e.g. the same file imported again
        generation, action = current.generation, "kept"
    else:
        installed = node.indexes.install(info.name, bundle, drop_cache=decision.drop_cache)
        generation, action = installed.generation, "installed"
    missing = (_missing_passages(bundle, _passage_labels(node, info.name))
               if decision.documents_missing else 0)
    if decision.kind is DecisionKind.APPLY_LOCAL_DELTA:
        generation = node.build(info.name, progress=progress).generation
        action += "+delta"
    return ImportReport(
        collection=info.name, decision=decision, action=action, created_collection=created,
        documents_merged=merged, passages_missing=missing, generation=generation,
    )


def plan_import(
    node: Node | None,
    bundle: Bundle,
    *,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
) -> ImportReport:
    """What ``import_verified`` would decide and do with ``bundle`` (opened ``verify="full"``),
    changing nothing: no collection created, no document merged, nothing installed, built or
    logged. ``node`` may be open read-only; None plans for a data directory with no store yet
    (a fresh device). Raises what the import raises before it decides (a stamp too far ahead,
    a collection it could not create); a refusal is reported (action "refused"), not raised.
    ``documents_merged`` counts the carried changes newer than this store's (last writer wins).
    """
    manifest = bundle.manifest
    changes = _carried_changes(bundle, max_clock_skew_ms)
    info = None if node is None else _existing_collection(node, manifest.collection)
    if node is None or info is None:
        embedder, chunking = _creation_config(manifest)
        local = LocalState(collection=manifest.collection,
                           fingerprint=embedder_from_spec(embedder).fingerprint,
                           store_state=StoreState(), chunking=chunking.to_dict())
        stamps: dict[str, HLCTimestamp] = {}
        current = None
        present: Callable[[], set[int]] = set
    else:
        local = local_state(node, info)
        stamps = {change.doc_id: change.hlc
                  for change in node.store.changes_since(0, collection=info.name)}
        current = node.indexes.manifest(info.name)
        present = partial(_passage_labels, node, info.name)
    merged = 0
    if changes is not None:
        merged = sum(1 for change in changes
                     if change.doc_id not in stamps or stamps[change.doc_id] < change.hlc)
        local = replace(local, store_state=_merged_state(local.store_state, changes))
    decision = decide_compatibility(manifest, local)
    missing = _missing_passages(bundle, present()) if decision.documents_missing else 0
    action, generation = _planned_action(decision, current, manifest)
    return ImportReport(
        collection=manifest.collection, decision=decision, action=action,
        created_collection=info is None, documents_merged=merged, passages_missing=missing,
        generation=generation, dry_run=True,
    )


def _merged_state(state: StoreState, changes: list[RemoteChange]) -> StoreState:
    """The store state after merging ``changes`` as far as the decision reads it: each origin
    device's watermark rises to the highest origin seq carried (applied or not, as
    ``apply_remote_changes`` records it)."""
    watermarks = dict(state.seq_watermarks)
    for change in changes:
        watermarks[change.origin_device] = max(watermarks.get(change.origin_device, 0),
                                               change.origin_seq)
    return replace(state, seq_watermarks=watermarks)


def _planned_action(decision: Decision, current: BundleManifest | None,
                    incoming: BundleManifest) -> tuple[str, int | None]:
    """The action ``_import`` would take, and the installed generation it would keep."""
    if decision.kind is DecisionKind.REFUSE:
        return "refused", None
    if decision.kind is DecisionKind.REBUILD_LOCALLY:
        return "rebuilt", None
    kept = current.generation if current is not None and _covers(current, incoming) else None
    action = "installed" if kept is None else "kept"
    if decision.kind is DecisionKind.APPLY_LOCAL_DELTA:
        action += "+delta"
    return action, kept


def _covers(installed: BundleManifest | None, incoming: BundleManifest) -> bool:
    """Whether the installed index already indexes every change ``incoming`` does, with the
    same model and build parameters: installing it would change nothing but the generation
    number (which it used to, on every import of the same file)."""
    if installed is None or installed.fingerprint != incoming.fingerprint:
        return False
    if dict(installed.build_params) != dict(incoming.build_params):
        return False
    _, incoming_ahead = compare_store_states(incoming.store_state, installed.store_state)
    return not incoming_ahead


def describe_import(report: ImportReport) -> list[str]:
    """Lines a person reads after an import: the decision, its reasons, and what was done (for
    a dry run, what would be, under a first line saying nothing changed)."""
    dry = report.dry_run
    lines = ["dry run: nothing was changed; importing this bundle would do this"] if dry else []
    lines.append(f"decision: {report.decision.kind.value}")
    lines += [f"  - {reason}" for reason in report.decision.reasons]
    if report.created_collection:
        lines.append(f"{'would create' if dry else 'created'} collection {report.collection} "
                     "from the bundle's config")
    if report.documents_merged:
        lines.append(f"{'would merge' if dry else 'merged'} {report.documents_merged} documents "
                     "carried by the bundle")
    if report.passages_missing:
        lines.append(
            f"{report.passages_missing} indexed passages are not in this store yet: their "
            "documents are missing here (sync them, or import a bundle exported "
            "--with-documents); searches skip them until they arrive"
        )
    if report.action.startswith("kept"):
        lines.append(f"the installed index (generation {report.generation}) already holds "
                     f"everything this bundle indexes: {'would keep' if dry else 'kept'} it")
    if dry:
        lines.append(f"would be {report.action}: collection {report.collection}")
    else:
        lines.append(f"{report.action}: collection {report.collection} generation "
                     f"{report.generation}")
    return lines
