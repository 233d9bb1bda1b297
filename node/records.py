"""Plain records the ``Node`` facade and the store hand out and take in.

These are the domain types both the CLI and the gRPC servicer speak; wire messages are
converted to and from them at the server edge, never passed further in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.decision_log import DecisionRecord
from meshdex.node.hlc import HLCTimestamp

if TYPE_CHECKING:  # the engine is heavy to import; records stay light
    from meshdex.index.engine import SearchStats

__all__ = [
    "Change",
    "ChangeOp",
    "CollectionInfo",
    "CollectionState",
    "Conflict",
    "DeleteReport",
    "Document",
    "DocumentInfo",
    "DocumentInput",
    "DocumentSummary",
    "ItemOutcome",
    "NodeStatus",
    "Outcome",
    "PassageHit",
    "SearchResults",
    "UpsertReport",
]


@dataclass(frozen=True, kw_only=True)
class CollectionInfo:
    """A collection: how its documents are embedded and cut, and how many it holds."""

    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams
    created_ms: int
    updated_ms: int
    document_count: int = 0
    passage_count: int = 0
    tombstone_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "embedder": self.embedder.to_dict(),
            "chunking": self.chunking.to_dict(),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "document_count": self.document_count,
            "passage_count": self.passage_count,
            "tombstone_count": self.tombstone_count,
        }


@dataclass(frozen=True, kw_only=True)
class DocumentInput:
    """One document to add or replace. ``source`` is where it came from (a path, a URL)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class Document:
    """A live document as stored."""

    collection: str
    id: str
    text: str
    metadata: dict[str, Any]
    source: str | None
    content_hash: str  # hex SHA-256 of the UTF-8 text
    hlc: HLCTimestamp
    passage_keys: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "id": self.id,
            "text": self.text,
            "metadata": self.metadata,
            "source": self.source,
            "content_hash": self.content_hash,
            "hlc": self.hlc.to_str(),
            "passage_count": len(self.passage_keys),
        }


@dataclass(frozen=True, kw_only=True)
class DocumentSummary:
    """A live document as ``meshdex docs`` lists it: no text, its size and last write."""

    id: str
    source: str | None
    size_bytes: int  # of the text, UTF-8
    passages: int
    hlc: HLCTimestamp  # of the last write; its physical time is when that was

    @classmethod
    def of(cls, document: Document) -> DocumentSummary:
        return cls(id=document.id, source=document.source,
                   size_bytes=len(document.text.encode("utf-8")),
                   passages=len(document.passage_keys), hlc=document.hlc)

    def to_dict(self) -> dict[str, Any]:
        updated = datetime.fromtimestamp(self.hlc.physical_ms / 1000, tz=UTC)
        return {"id": self.id, "source": self.source, "size_bytes": self.size_bytes,
                "passages": self.passages,
                "updated": updated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "hlc": self.hlc.to_str()}


@dataclass(frozen=True, kw_only=True)
class DocumentInfo:
    """A live document without its text: what filters and search results need."""

    id: str
    source: str | None
    metadata: dict[str, Any]
    hlc: HLCTimestamp


class Outcome(StrEnum):
    """What happened to one input document."""

    ADDED = "added"
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class ItemOutcome:
    """The outcome for the input at ``position`` (0-based, in input order)."""

    position: int
    id: str
    outcome: Outcome
    reason: str | None = None  # set when rejected: what was wrong, in words a person can act on


@dataclass(frozen=True, kw_only=True)
class UpsertReport:
    """Per-item outcomes of one upsert; every accepted item was committed before this returns."""

    collection: str
    items: list[ItemOutcome]
    created_collection: bool = False  # the collection did not exist and was made with defaults

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.items if item.outcome is outcome)

    @property
    def rejected(self) -> list[ItemOutcome]:
        return [item for item in self.items if item.outcome is Outcome.REJECTED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "created_collection": self.created_collection,
            **{outcome.value: self.count(outcome) for outcome in Outcome},
            "rejected_items": [
                {"position": item.position, "id": item.id, "reason": item.reason}
                for item in self.rejected
            ],
        }


@dataclass(frozen=True, kw_only=True)
class SourceScope:
    """The documents one source file owns, for replacing them all when it is read again.

    A reader that splits a file into several documents (a Python file by symbol, a PDF by
    page) gives them ids ``owner_id`` + ``separator`` + part, and sometimes ``owner_id`` itself.
    After a complete read, every live document of that shape not in ``keep`` (what the read
    produced) is stale: a function deleted from the file, a page dropped from the PDF.
    """

    owner_id: str
    separator: str
    keep: frozenset[str]

    def owns(self, doc_id: str) -> bool:
        return doc_id == self.owner_id or doc_id.startswith(self.owner_id + self.separator)


@dataclass(frozen=True, kw_only=True)
class DeleteReport:
    """Which ids were deleted (tombstoned) and which were not live in the collection."""

    collection: str
    deleted: list[str]
    not_found: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"collection": self.collection, "deleted": self.deleted, "not_found": self.not_found}


class ChangeOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True, kw_only=True)
class Change:
    """One entry of the change log: a document written or deleted.

    ``seq`` is this device's log position; ``origin_device``/``origin_seq`` name the device
    and position where the write first happened (equal to this device for local writes).
    """

    seq: int
    collection: str
    doc_id: str
    op: ChangeOp
    hlc: HLCTimestamp
    content_hash: str | None
    origin_device: str
    origin_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "collection": self.collection,
            "doc_id": self.doc_id,
            "op": self.op.value,
            "hlc": self.hlc.to_str(),
            "content_hash": self.content_hash,
            "origin_device": self.origin_device,
            "origin_seq": self.origin_seq,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(
            seq=data["seq"],
            collection=data["collection"],
            doc_id=data["doc_id"],
            op=ChangeOp(data["op"]),
            hlc=HLCTimestamp.from_str(data["hlc"]),
            content_hash=data["content_hash"],
            origin_device=data["origin_device"],
            origin_seq=data["origin_seq"],
        )


@dataclass(frozen=True, kw_only=True)
class RemoteChange:
    """A document write received from a peer, merged by last-writer-wins on ``hlc``.

    ``text`` (and ``metadata``, ``source``) describe the document for ``UPSERT``; a
    ``DELETE`` carries only the id and stamp.
    """

    doc_id: str
    op: ChangeOp
    hlc: HLCTimestamp
    origin_device: str
    origin_seq: int
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def document(self) -> DocumentInput:
        """The document an ``UPSERT`` carries; ``InvalidArgument`` if it carries no text."""
        if self.text is None:
            raise InvalidArgument(f"remote upsert of {self.doc_id!r} carries no text")
        return DocumentInput(
            id=self.doc_id, text=self.text, metadata=self.metadata, source=self.source
        )


@dataclass(frozen=True, kw_only=True)
class CollectionState:
    """How far a collection has seen each device's changes, and its newest stamp."""

    collection: str
    watermarks: dict[str, int]  # origin device id -> highest origin_seq applied
    max_hlc: HLCTimestamp | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "watermarks": dict(sorted(self.watermarks.items())),
            "max_hlc": self.max_hlc.to_str() if self.max_hlc else None,
        }


@dataclass(frozen=True, kw_only=True)
class PeerStatus:
    """A paired device as ``peers`` and ``status`` show it: its record in the trust store
    without the certificate, and its lag."""

    device_id: str
    name: str
    addresses: tuple[str, ...]
    collections: tuple[str, ...]
    mode: str
    added_at: float
    last_contact: float | None
    last_sync: float | None
    last_error: str | None
    lag: int | None  # changes in shared collections it has not acknowledged; None: unknown
    held_read_only: bool = False  # it takes none of this device's changes (lag is None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["addresses"], data["collections"] = list(self.addresses), list(self.collections)
        return data


@dataclass(frozen=True, kw_only=True)
class NodeStatus:
    """What a device holds: its ids, its store, each collection's counts, and its peers.

    ``device_id`` is the id peers know the device by (``meshdex id``; "" until its key is
    created on first use); ``store_id`` the one its store stamps its writes with.
    """

    data_dir: Path
    device_id: str
    store_id: str
    last_seq: int
    max_hlc: HLCTimestamp | None
    store_bytes: int
    collections: list[CollectionInfo]
    indexes: list[IndexSummary] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)  # newest first
    peers: list[PeerStatus] = field(default_factory=list)
    conflicts: dict[str, int] = field(default_factory=dict)  # records kept, per collection

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "device_id": self.device_id,
            "store_id": self.store_id,
            "last_seq": self.last_seq,
            "max_hlc": self.max_hlc.to_str() if self.max_hlc else None,
            "store_bytes": self.store_bytes,
            "collections": [info.to_dict() for info in self.collections],
            "indexes": [asdict(summary) for summary in self.indexes],
            "decisions": [record.to_dict() for record in self.decisions],
            "sync": {"peers": [peer.to_dict() for peer in self.peers],
                     "conflicts": sum(self.conflicts.values()),
                     "conflicts_by_collection": dict(sorted(self.conflicts.items()))},
        }


@dataclass(frozen=True, kw_only=True)
class IndexSummary:
    """A collection's current bundle: generation, size, model, and whether documents changed
    since it was built (``stale``: run ``meshdex build``)."""

    collection: str
    generation: int
    passages: int
    bundle_bytes: int
    model_id: str
    model_hash: str
    stale: bool
    damaged: str = ""  # why the installed bundle cannot be served, and how to rebuild it
    waiting_for_documents: bool = False  # the index is ahead of the store (not stale for it)


@dataclass(frozen=True, kw_only=True)
class PassageHit:
    """One search result: the matching passage, its document, and its scores.

    ``score`` ranks the hits in the search's mode: cosine similarity (semantic), BM25
    (keyword), or the fused reciprocal rank (hybrid: a few sixtieths for every top hit, telling
    nothing of how close a hit is). So each hit also carries what each ranking said of it:
    ``similarity``, its cosine to the query where the semantic ranking scored it, and
    ``bm25`` where the keyword ranking did; None where that ranking did not rank it.
    """

    document_id: str
    source: str | None
    metadata: dict[str, Any]
    passage: str
    score: float
    similarity: float | None = None
    bm25: float | None = None


def rounded_score(value: float | None) -> float | None:
    """A score as JSON answers carry it (six decimals), None kept."""
    return None if value is None else round(value, 6)


def scores_text(*, score: float, similarity: float | None, bm25: float | None) -> str:
    """How close a hit is, for a person: "cosine 0.712 · bm25 8.41", what each ranking said of
    it (the hit's ``score`` where neither is known: a hit from an older node)."""
    parts = ([f"cosine {similarity:.3f}"] if similarity is not None else []) + (
        [f"bm25 {bm25:.2f}"] if bm25 is not None else [])
    return " · ".join(parts) or f"score {score:.3f}"


@dataclass(frozen=True, kw_only=True)
class SearchResults:
    """What ``Node.search`` returns (embedded or over gRPC): hits best first, and the cost."""

    collection: str
    hits: list[PassageHit]
    stats: SearchStats
    index_behind: bool = False  # the store holds changes the index does not: run a build


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """A version of a document that lost last-writer-wins to a concurrent edit, kept so that
    nothing a person wrote is silently lost. ``hlc`` is the losing version's stamp,
    ``winner_hlc`` the stamp of the version that replaced or outranked it. Identified by
    (collection, doc_id, hlc): the same conflict noted on two devices is one record."""

    collection: str
    doc_id: str
    op: ChangeOp
    hlc: HLCTimestamp
    origin_device: str
    winner_hlc: HLCTimestamp
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    # This device's log position when it kept the record: peers resuming after it are sent
    # it. Local to the device (0 in a record received or not stored yet).
    seq: int = 0


@dataclass(frozen=True, kw_only=True)
class IndexCompaction:
    """What ``IndexManager.drop_deleted`` did to a collection's indexes: passages dropped, and
    the bytes of its bundle and keyword indexes before and after; ``damaged``, the error that
    left them as they were (an index that cannot be read), else empty."""

    collection: str
    dropped_passages: int
    before_bytes: int
    after_bytes: int
    damaged: str = ""


@dataclass(frozen=True, kw_only=True)
class DataCompaction:
    """What ``Node.compact`` did: the store's data file before and after, the tombstones it
    dropped and kept, whose acknowledgement those kept wait for (paired peers by device id,
    and how many devices no longer paired), and per collection the passages its indexes
    dropped."""

    before_bytes: int
    after_bytes: int
    tombstones_dropped: int
    indexes: list[IndexCompaction]
    tombstones_kept: int = 0
    waiting_for_peers: list[str] = field(default_factory=list)
    waiting_for_unpaired: int = 0
