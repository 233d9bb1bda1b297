"""Conversion between ``meshdex.v1`` protobuf messages and ``node/records.py`` dataclasses.

Generated message classes are touched only here, in the servicer and in the client (the server
only registers the generated service and names it for reflection). Decoding
validates what the domain cannot see (JSON text, sizes, empty required fields) and raises
``InvalidArgument`` / ``ResourceExhausted`` with the offending field named; decoding a record
the server sent never trusts it further than the dataclass constructors do.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument, ResourceExhausted
from meshdex.index.json_limits import loads_json
from meshdex.node.decision_log import DecisionRecord
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import (
    CollectionInfo,
    DataCompaction,
    DeleteReport,
    Document,
    DocumentInput,
    DocumentSummary,
    IndexCompaction,
    IndexSummary,
    ItemOutcome,
    NodeStatus,
    Outcome,
    PassageHit,
    PeerStatus,
    SearchResults,
    SourceScope,
    UpsertReport,
)
from meshdex.proto.meshdex.v1 import node_pb2 as pb

if TYPE_CHECKING:
    from meshdex.index.params import BuildParams
    from meshdex.node.indexing import BuildReport, PinReport

DEFAULT_TOP_K = 5  # Node.search's default, so remote and embedded answer alike

_OUTCOMES_TO_WIRE = {
    Outcome.ADDED: pb.ItemOutcome.ADDED,
    Outcome.UNCHANGED: pb.ItemOutcome.UNCHANGED,
    Outcome.UPDATED: pb.ItemOutcome.UPDATED,
    Outcome.REJECTED: pb.ItemOutcome.REJECTED,
}
_OUTCOMES_FROM_WIRE = {wire: outcome for outcome, wire in _OUTCOMES_TO_WIRE.items()}


def require(value: str, field: str) -> str:
    """``value`` if it is non-empty, else InvalidArgument naming ``field``."""
    if not value:
        raise InvalidArgument(f"{field} is required")
    return value


def json_object(text: str, field: str) -> dict[str, Any]:
    """Parse a JSON object field; empty text is ``{}``."""
    if not text:
        return {}
    value = loads_json(text, what=field)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- collections -------------------------------------------------------------------------


def embedder_from_wire(message: pb.EmbedderSpec) -> EmbedderSpec:
    """Empty fields take ``EmbedderSpec``'s defaults; the spec validates the rest."""
    given = {
        name: getattr(message, name)
        for name in ("kind", "model_id", "precision", "url", "api_key_env")
        if getattr(message, name)
    }
    return EmbedderSpec(**given)


def embedder_to_wire(spec: EmbedderSpec) -> pb.EmbedderSpec:
    return pb.EmbedderSpec(kind=spec.kind, model_id=spec.model_id, precision=spec.precision,
                           url=spec.url or "", api_key_env=spec.api_key_env or "")


def chunking_from_wire(message: pb.ChunkingParams) -> ChunkingParams:
    """Zero fields take ``ChunkingParams``'s defaults."""
    given = {name: getattr(message, name) for name in ("max_chars", "overlap_chars")
             if getattr(message, name)}
    return ChunkingParams(**given)


def chunking_to_wire(params: ChunkingParams) -> pb.ChunkingParams:
    return pb.ChunkingParams(max_chars=params.max_chars, overlap_chars=params.overlap_chars)


def collection_to_wire(info: CollectionInfo) -> pb.Collection:
    return pb.Collection(
        name=info.name,
        embedder=embedder_to_wire(info.embedder),
        chunking=chunking_to_wire(info.chunking),
        created_ms=info.created_ms,
        updated_ms=info.updated_ms,
        document_count=info.document_count,
        passage_count=info.passage_count,
        tombstone_count=info.tombstone_count,
    )


def collection_from_wire(message: pb.Collection) -> CollectionInfo:
    return CollectionInfo(
        name=message.name,
        embedder=embedder_from_wire(message.embedder),
        chunking=chunking_from_wire(message.chunking),
        created_ms=message.created_ms,
        updated_ms=message.updated_ms,
        document_count=message.document_count,
        passage_count=message.passage_count,
        tombstone_count=message.tombstone_count,
    )


# --- documents ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodedBatch:
    """One upload message, split into documents the node should see and ones refused here.

    ``positions[i]`` is the upload-wide position of ``documents[i]``.
    """

    documents: list[DocumentInput]
    positions: list[int]
    refused: list[ItemOutcome]


def document_input_to_wire(doc: DocumentInput) -> pb.DocumentInput:
    return pb.DocumentInput(id=doc.id, text=doc.text, source=doc.source or "",
                            metadata_json=to_json(doc.metadata) if doc.metadata else "")


def decode_batch(messages: Sequence[pb.DocumentInput], *, first_position: int,
                 max_documents: int) -> DecodedBatch:
    """Turn one message's documents into ``DocumentInput``s.

    A document whose metadata is not a JSON object is refused here, per item, like the node
    refuses empty text; the rest of the batch goes on. More than ``max_documents`` in one
    message refuses the whole message (ResourceExhausted) before anything is written.
    """
    if len(messages) > max_documents:
        raise ResourceExhausted(
            f"{len(messages)} documents in one message; the limit is {max_documents}",
            hint="split the upload into smaller batches (the UpsertDocuments stream takes many)",
        )
    documents, positions, refused = [], [], []
    for offset, message in enumerate(messages):
        position = first_position + offset
        try:
            metadata = json_object(message.metadata_json, "metadata_json")
        except InvalidArgument as error:
            refused.append(ItemOutcome(position=position, id=message.id,
                                       outcome=Outcome.REJECTED, reason=str(error)))
            continue
        documents.append(DocumentInput(id=message.id, text=message.text, metadata=metadata,
                                       source=message.source or None))
        positions.append(position)
    return DecodedBatch(documents=documents, positions=positions, refused=refused)


def merge_reports(collection: str, parts: Iterable[tuple[DecodedBatch, UpsertReport | None]],
                  ) -> UpsertReport:
    """One report for a whole upload: node outcomes re-positioned, plus wire refusals."""
    items: list[ItemOutcome] = []
    created = False
    for batch, report in parts:
        items.extend(batch.refused)
        if report is None:
            continue
        created = created or report.created_collection
        for item in report.items:
            items.append(ItemOutcome(position=batch.positions[item.position], id=item.id,
                                     outcome=item.outcome, reason=item.reason))
    items.sort(key=lambda item: item.position)
    return UpsertReport(collection=collection, items=items, created_collection=created)


def upsert_report_to_wire(report: UpsertReport) -> pb.UpsertResponse:
    return pb.UpsertResponse(
        collection=report.collection,
        created_collection=report.created_collection,
        items=[pb.ItemOutcome(position=item.position, id=item.id,
                              outcome=_OUTCOMES_TO_WIRE[item.outcome], reason=item.reason or "")
               for item in report.items],
    )


def upsert_report_from_wire(message: pb.UpsertResponse) -> UpsertReport:
    return UpsertReport(
        collection=message.collection,
        created_collection=message.created_collection,
        items=[ItemOutcome(position=item.position, id=item.id,
                           outcome=_OUTCOMES_FROM_WIRE[item.outcome], reason=item.reason or None)
               for item in message.items],
    )


def source_scope_to_wire(scope: SourceScope) -> pb.SourceScope:
    return pb.SourceScope(owner_id=scope.owner_id, separator=scope.separator,
                          keep=sorted(scope.keep))


def source_scope_from_wire(message: pb.SourceScope) -> SourceScope:
    return SourceScope(owner_id=require(message.owner_id, "sources.owner_id"),
                       separator=require(message.separator, "sources.separator"),
                       keep=frozenset(message.keep))


def delete_report_to_wire(report: DeleteReport) -> pb.DeleteDocumentsResponse:
    return pb.DeleteDocumentsResponse(collection=report.collection, deleted=report.deleted,
                                      not_found=report.not_found)


def delete_report_from_wire(message: pb.DeleteDocumentsResponse) -> DeleteReport:
    return DeleteReport(collection=message.collection, deleted=list(message.deleted),
                        not_found=list(message.not_found))


def document_to_wire(doc: Document) -> pb.Document:
    return pb.Document(id=doc.id, collection=doc.collection, source=doc.source or "",
                       metadata_json=to_json(doc.metadata), text=doc.text,
                       content_hash=doc.content_hash, hlc=doc.hlc.to_str(),
                       passage_keys=list(doc.passage_keys))


def document_from_wire(message: pb.Document) -> Document:
    return Document(collection=message.collection, id=message.id, text=message.text,
                    metadata=json_object(message.metadata_json, "metadata_json"),
                    source=message.source or None, content_hash=message.content_hash,
                    hlc=HLCTimestamp.from_str(message.hlc),
                    passage_keys=tuple(message.passage_keys))


def document_summary_to_wire(summary: DocumentSummary) -> pb.DocumentSummary:
    return pb.DocumentSummary(id=summary.id, source=summary.source or "",
                              size_bytes=summary.size_bytes, passages=summary.passages,
                              hlc=summary.hlc.to_str())


def document_summary_from_wire(message: pb.DocumentSummary) -> DocumentSummary:
    return DocumentSummary(id=message.id, source=message.source or None,
                           size_bytes=message.size_bytes, passages=message.passages,
                           hlc=HLCTimestamp.from_str(message.hlc))


# --- status ------------------------------------------------------------------------------


def peer_status_to_wire(peer: PeerStatus) -> pb.PeerInfo:
    return pb.PeerInfo(device_id=peer.device_id, name=peer.name, addresses=peer.addresses,
                       collections=peer.collections, mode=peer.mode, added_at=peer.added_at,
                       last_contact=peer.last_contact or 0, last_sync=peer.last_sync or 0,
                       last_error=peer.last_error or "",
                       lag=-1 if peer.lag is None else peer.lag,
                       held_read_only=peer.held_read_only)


def peer_status_from_wire(message: pb.PeerInfo) -> PeerStatus:
    return PeerStatus(device_id=message.device_id, name=message.name,
                      addresses=tuple(message.addresses), collections=tuple(message.collections),
                      mode=message.mode, added_at=message.added_at,
                      last_contact=message.last_contact or None,
                      last_sync=message.last_sync or None, last_error=message.last_error or None,
                      lag=None if message.lag < 0 else message.lag,
                      held_read_only=message.held_read_only)


def status_to_wire(status: NodeStatus) -> pb.NodeStatus:
    return pb.NodeStatus(
        data_dir=str(status.data_dir), device_id=status.device_id, store_id=status.store_id,
        last_seq=status.last_seq, max_hlc=status.max_hlc.to_str() if status.max_hlc else "",
        store_bytes=status.store_bytes,
        collections=[collection_to_wire(info) for info in status.collections],
        indexes=[pb.IndexSummary(**dataclasses.asdict(summary)) for summary in status.indexes],
        decisions=[
            pb.IndexDecision(at_ms=record.at_ms, collection=record.collection,
                             trigger=record.trigger, decision=record.decision,
                             reasons=list(record.reasons), generation=record.generation or 0)
            for record in status.decisions
        ],
        peers=[peer_status_to_wire(peer) for peer in status.peers],
        conflicts=status.conflicts,
    )


def status_from_wire(message: pb.NodeStatus) -> NodeStatus:
    return NodeStatus(
        data_dir=Path(message.data_dir), device_id=message.device_id, store_id=message.store_id,
        last_seq=message.last_seq,
        max_hlc=HLCTimestamp.from_str(message.max_hlc) if message.max_hlc else None,
        store_bytes=message.store_bytes,
        collections=[collection_from_wire(info) for info in message.collections],
        indexes=[
            IndexSummary(collection=index.collection, generation=index.generation,
                         passages=index.passages, bundle_bytes=index.bundle_bytes,
                         model_id=index.model_id, model_hash=index.model_hash,
                         stale=index.stale, damaged=index.damaged,
                         waiting_for_documents=index.waiting_for_documents)
            for index in message.indexes
        ],
        decisions=[
            DecisionRecord(at_ms=record.at_ms, collection=record.collection,
                           trigger=record.trigger, decision=record.decision,
                           reasons=tuple(record.reasons), generation=record.generation or None)
            for record in message.decisions
        ],
        peers=[peer_status_from_wire(peer) for peer in message.peers],
        conflicts=dict(message.conflicts),
    )


def compaction_to_wire(report: DataCompaction) -> pb.CompactResponse:
    return pb.CompactResponse(
        before_bytes=report.before_bytes, after_bytes=report.after_bytes,
        tombstones_dropped=report.tombstones_dropped,
        indexes=[pb.IndexCompactionInfo(**dataclasses.asdict(index))
                 for index in report.indexes],
        tombstones_kept=report.tombstones_kept, waiting_for_peers=report.waiting_for_peers,
        waiting_for_unpaired=report.waiting_for_unpaired)


def compaction_from_wire(message: pb.CompactResponse) -> DataCompaction:
    return DataCompaction(
        before_bytes=message.before_bytes, after_bytes=message.after_bytes,
        tombstones_dropped=message.tombstones_dropped,
        indexes=[IndexCompaction(collection=index.collection,
                                 dropped_passages=index.dropped_passages,
                                 before_bytes=index.before_bytes, after_bytes=index.after_bytes,
                                 damaged=index.damaged)
                 for index in message.indexes],
        tombstones_kept=message.tombstones_kept,
        waiting_for_peers=list(message.waiting_for_peers),
        waiting_for_unpaired=message.waiting_for_unpaired)


# --- search ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchCall:
    """A validated search request, in the keyword arguments ``Node.search`` takes."""

    collection: str
    query: str
    top_k: int
    filter: str | None
    params: dict[str, Any] | None
    mode: str | None


def search_request_from_wire(message: pb.SearchRequest) -> SearchCall:
    """Field presence and JSON here; the node checks the query text, top_k's range and the
    params' values (``recall_target`` joins them)."""
    params = json_object(message.params_json, "params_json")
    if message.recall_target:
        if "recall_target" in params:
            raise InvalidArgument("recall_target is given both as a field and in params_json")
        params["recall_target"] = message.recall_target
    return SearchCall(
        collection=require(message.collection, "collection"),
        query=message.query,
        top_k=message.top_k or DEFAULT_TOP_K,
        filter=message.filter.strip() or None,
        params=params or None,
        mode=message.mode.strip() or None,
    )



def search_result_to_wire(result: SearchResults) -> pb.SearchResponse:
    known = pb.SearchStats.DESCRIPTOR.fields_by_name  # the engine may count more than we send
    return pb.SearchResponse(
        collection=result.collection,
        hits=[pb.SearchHit(document_id=hit.document_id, source=hit.source or "",
                           metadata_json=to_json(hit.metadata), passage=hit.passage,
                           score=hit.score, similarity=hit.similarity, bm25=hit.bm25)
              for hit in result.hits],
        stats=pb.SearchStats(**{name: getattr(result.stats, name) for name in known
                                if hasattr(result.stats, name)}),
        index_behind=result.index_behind,
    )


def search_result_from_wire(message: pb.SearchResponse) -> SearchResults:
    # Imported here: the engine module is heavy and only search results need its stats type.
    from meshdex.index.engine import SearchStats

    stats_fields = {field.name for field in dataclasses.fields(SearchStats)}
    return SearchResults(
        collection=message.collection,
        hits=[PassageHit(document_id=hit.document_id, source=hit.source or None,
                         metadata=json_object(hit.metadata_json, "metadata_json"),
                         passage=hit.passage, score=hit.score,
                         similarity=hit.similarity if hit.HasField("similarity") else None,
                         bm25=hit.bm25 if hit.HasField("bm25") else None)
              for hit in message.hits],
        stats=SearchStats(**{name: getattr(message.stats, name)
                             for name in pb.SearchStats.DESCRIPTOR.fields_by_name
                             if name in stats_fields}),
        index_behind=message.index_behind,
    )


# --- build -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildCall:
    """A validated build request, in the keyword arguments ``Node.build`` takes."""

    collection: str
    params: BuildParams | None
    rebuild: bool


def build_request_from_wire(message: pb.BuildRequest) -> BuildCall:
    from meshdex.index.params import BuildParams

    given = json_object(message.params_json, "params_json")
    return BuildCall(collection=require(message.collection, "collection"),
                     params=BuildParams.from_dict(given) if given else None,
                     rebuild=message.rebuild)


def pin_report_from_wire(summary_json: str) -> PinReport:
    """The ``PinReport`` the node sent as the last message's summary."""
    from meshdex.node.indexing import PinReport

    summary = json_object(summary_json, "summary_json")
    try:
        return PinReport(**summary)
    except TypeError as error:
        raise InvalidArgument(f"the node sent a pin summary this client cannot read: {error}",
                              hint="client and node versions may differ") from None


def build_report_from_wire(summary_json: str) -> BuildReport:
    """The ``BuildReport`` the node sent as the last message's summary."""
    # Imported here, like SearchStats: node.indexing pulls in the engine.
    from meshdex.node.indexing import BuildReport

    summary = json_object(summary_json, "summary_json")
    try:
        return BuildReport(**{**summary, "bundle_path": Path(summary["bundle_path"])})
    except (KeyError, TypeError) as error:
        raise InvalidArgument(f"the node sent a build summary this client cannot read: {error}",
                              hint="client and node versions may differ") from None
