"""Conversion between ``meshdex.v1.MeshdexSync`` messages and the sync layer's dataclasses.

Generated sync code is touched only here, in ``servicer.py`` and ``client.py``. Every
``*_from_wire`` validates before anything else sees the data: a peer is untrusted input even
once paired. A malformed message raises ``ProtocolViolation`` naming the field; sizes are
bounded by ``MAX_BATCH_CHANGES`` / ``MAX_BATCH_TEXT_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshdex.index.bundle_manifest import manifest_from_bytes, manifest_to_bytes
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import BundleCorrupt, InvalidArgument
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import ChangeOp, Conflict, DocumentInput, RemoteChange
from meshdex.node.validation import check_collection_name, check_document, check_document_id
from meshdex.node.wire import (
    chunking_from_wire,
    chunking_to_wire,
    embedder_from_wire,
    embedder_to_wire,
    json_object,
    to_json,
)
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.sync.blocks import (
    MAX_BLOCK_SIZE_BYTES,
    MAX_BLOCKS_PER_REQUEST,
    MIN_BLOCK_SIZE_BYTES,
    SHA256_BYTES,
    BlockMap,
    block_count,
)
from meshdex.sync.bundle_shelf import BundleOffer
from meshdex.sync.errors import ProtocolViolation

PROTOCOL_VERSION = 1
MAX_BATCH_CHANGES = 256
MAX_BATCH_TEXT_BYTES = 4 * 1024 * 1024  # a batch stops growing past this (one doc may exceed)
MAX_STORE_ID_CHARS = 128
NONCE_BYTES = 32
PROOF_BYTES = 32


def _violation(what: str, error: Exception) -> ProtocolViolation:
    message = error.message if isinstance(error, InvalidArgument) else str(error)
    return ProtocolViolation(f"peer sent an invalid {what}: {message}")


def check_store_id(value: str, what: str) -> str:
    if not value or len(value) > MAX_STORE_ID_CHARS:
        raise ProtocolViolation(f"peer sent an invalid {what}: {value[:40]!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class CollectionConfig:
    """What a collection is, shipped so a receiver can create it alike."""

    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams


@dataclass(frozen=True, kw_only=True)
class SharedCollection:
    """One side's view of a shared collection at hello time."""

    config: CollectionConfig
    last_seq: int = 0
    cursor: int = 0
    watermarks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Hello:
    """Either side's hello. ``device_id`` is empty in a request (the certificate says it)."""

    protocol_version: int
    store_id: str
    collections: list[SharedCollection]
    bundle_format_versions: tuple[int, ...] = ()
    device_id: str = ""
    caller_read_only: bool = False
    shared_names: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ChangeBatch:
    """Changes of one collection, in the sender's log order, up to ``last_seq`` of the log of
    the store ``sender_store_id``."""

    collection: str
    changes: list[RemoteChange]
    last_seq: int
    sender_store_id: str
    config: CollectionConfig | None = None
    conflicts: list[Conflict] = field(default_factory=list)  # conflict records, same collection


@dataclass(frozen=True, kw_only=True)
class PairProof:
    """A joiner's redemption of an invite."""

    invite_id: str
    nonce: bytes
    proof: bytes
    joiner_cert_pem: str
    joiner_name: str
    joiner_addresses: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PairGrant:
    """What the inviter tells the joiner once pairing succeeded."""

    inviter_name: str
    inviter_addresses: tuple[str, ...]
    collections: tuple[str, ...]
    joiner_read_only: bool


# --- collections and hello --------------------------------------------------------------


def config_to_wire(config: CollectionConfig) -> pb.CollectionConfig:
    return pb.CollectionConfig(name=config.name, embedder=embedder_to_wire(config.embedder),
                               chunking=chunking_to_wire(config.chunking))


def config_from_wire(message: pb.CollectionConfig) -> CollectionConfig:
    try:
        return CollectionConfig(name=check_collection_name(message.name),
                                embedder=embedder_from_wire(message.embedder),
                                chunking=chunking_from_wire(message.chunking))
    except InvalidArgument as error:
        raise _violation("collection config", error) from None


def _watermarks_from_wire(values: dict[str, int]) -> dict[str, int]:
    return {check_store_id(key, "watermark origin"): int(seq) for key, seq in values.items()}


def shared_to_wire(shared: SharedCollection) -> pb.SharedCollection:
    return pb.SharedCollection(config=config_to_wire(shared.config), last_seq=shared.last_seq,
                               cursor=shared.cursor, watermarks=shared.watermarks)


def shared_from_wire(message: pb.SharedCollection) -> SharedCollection:
    return SharedCollection(config=config_from_wire(message.config), last_seq=message.last_seq,
                            cursor=message.cursor,
                            watermarks=_watermarks_from_wire(dict(message.watermarks)))


def hello_request_to_wire(hello: Hello) -> pb.HelloRequest:
    return pb.HelloRequest(protocol_version=hello.protocol_version, store_id=hello.store_id,
                           bundle_format_versions=hello.bundle_format_versions,
                           collections=[shared_to_wire(c) for c in hello.collections])


def hello_request_from_wire(message: pb.HelloRequest) -> Hello:
    return Hello(protocol_version=message.protocol_version,
                 store_id=check_store_id(message.store_id, "store id"),
                 bundle_format_versions=tuple(message.bundle_format_versions),
                 collections=[shared_from_wire(c) for c in message.collections])


def hello_response_to_wire(hello: Hello) -> pb.HelloResponse:
    return pb.HelloResponse(protocol_version=hello.protocol_version, device_id=hello.device_id,
                            store_id=hello.store_id,
                            bundle_format_versions=hello.bundle_format_versions,
                            collections=[shared_to_wire(c) for c in hello.collections],
                            caller_read_only=hello.caller_read_only,
                            shared_names=hello.shared_names)


def hello_response_from_wire(message: pb.HelloResponse) -> Hello:
    try:
        shared_names = tuple(check_collection_name(name) for name in message.shared_names)
    except InvalidArgument as error:
        raise _violation("hello", error) from None
    return Hello(shared_names=shared_names, protocol_version=message.protocol_version,
                 device_id=message.device_id,
                 store_id=check_store_id(message.store_id, "store id"),
                 bundle_format_versions=tuple(message.bundle_format_versions),
                 collections=[shared_from_wire(c) for c in message.collections],
                 caller_read_only=message.caller_read_only)


# --- changes ------------------------------------------------------------------------------


def change_to_wire(change: RemoteChange) -> pb.WireChange:
    return pb.WireChange(
        doc_id=change.doc_id, deleted=change.op is ChangeOp.DELETE, hlc=change.hlc.to_str(),
        origin_device=change.origin_device, origin_seq=change.origin_seq,
        text=change.text or "", metadata_json=to_json(change.metadata) if change.metadata else "",
        source=change.source or "", has_source=change.source is not None,
    )


def change_from_wire(message: pb.WireChange) -> RemoteChange:
    """A validated change: the id, stamp, origin and (for upserts) the document itself."""
    try:
        change = RemoteChange(
            doc_id=message.doc_id,
            op=ChangeOp.DELETE if message.deleted else ChangeOp.UPSERT,
            hlc=HLCTimestamp.from_str(message.hlc),
            origin_device=check_store_id(message.origin_device, "origin device"),
            origin_seq=message.origin_seq,
            text=None if message.deleted else message.text,
            metadata=json_object(message.metadata_json, "metadata_json"),
            source=message.source if message.has_source else None,
        )
        if change.op is ChangeOp.UPSERT:
            check_document(change.document())
        elif not change.doc_id:
            raise InvalidArgument("doc_id is required")
    except InvalidArgument as error:
        raise _violation(f"change of {message.doc_id[:60]!r}", error) from None
    return change


def conflict_to_wire(conflict: Conflict) -> pb.ConflictInfo:
    return pb.ConflictInfo(collection=conflict.collection, doc_id=conflict.doc_id,
                           losing_hlc=conflict.hlc.to_str(),
                           winning_hlc=conflict.winner_hlc.to_str(),
                           origin_device=conflict.origin_device, text=conflict.text or "",
                           has_text=conflict.text is not None,
                           metadata_json=to_json(conflict.metadata), source=conflict.source or "",
                           has_source=conflict.source is not None,
                           deleted=conflict.op is ChangeOp.DELETE)


def conflict_from_wire(message: pb.ConflictInfo) -> Conflict:
    """A validated conflict record: the losing version must be a valid document (or a
    delete), its stamps well formed."""
    try:
        conflict = Conflict(
            collection=check_collection_name(message.collection), doc_id=message.doc_id,
            op=ChangeOp.DELETE if message.deleted else ChangeOp.UPSERT,
            hlc=HLCTimestamp.from_str(message.losing_hlc),
            winner_hlc=HLCTimestamp.from_str(message.winning_hlc),
            origin_device=check_store_id(message.origin_device, "conflict origin device"),
            text=message.text if message.has_text else None,
            metadata=json_object(message.metadata_json, "metadata_json"),
            source=message.source if message.has_source else None)
        if conflict.text is not None:
            check_document(DocumentInput(id=conflict.doc_id, text=conflict.text,
                                         metadata=conflict.metadata, source=conflict.source))
        else:
            check_document_id(conflict.doc_id)
    except InvalidArgument as error:
        raise _violation(f"conflict record of {message.doc_id[:60]!r}", error) from None
    return conflict


def batch_to_wire(batch: ChangeBatch) -> pb.ChangeBatch:
    return pb.ChangeBatch(
        collection=batch.collection, last_seq=batch.last_seq,
        sender_store_id=batch.sender_store_id, changes=[change_to_wire(c) for c in batch.changes],
        config=config_to_wire(batch.config) if batch.config else None,
        conflicts=[conflict_to_wire(c) for c in batch.conflicts],
    )


def batch_from_wire(message: pb.ChangeBatch) -> ChangeBatch:
    items = len(message.changes) + len(message.conflicts)
    if items > MAX_BATCH_CHANGES:
        raise ProtocolViolation(f"peer sent {items} changes and conflict records in one "
                                f"batch; the limit is {MAX_BATCH_CHANGES}")
    try:
        collection = check_collection_name(message.collection)
    except InvalidArgument as error:
        raise _violation("batch", error) from None
    config = config_from_wire(message.config) if message.HasField("config") else None
    if config is not None and config.name != collection:
        raise ProtocolViolation("batch config names another collection")
    conflicts = [conflict_from_wire(c) for c in message.conflicts]
    if any(c.collection != collection for c in conflicts):
        raise ProtocolViolation("batch carries a conflict record of another collection")
    return ChangeBatch(collection=collection, last_seq=message.last_seq, config=config,
                       sender_store_id=check_store_id(message.sender_store_id,
                                                       "sender store id"),
                       changes=[change_from_wire(c) for c in message.changes],
                       conflicts=conflicts)


# --- pairing ------------------------------------------------------------------------------


def pair_request_to_wire(proof: PairProof) -> pb.PairRequest:
    return pb.PairRequest(invite_id=proof.invite_id, nonce=proof.nonce, proof=proof.proof,
                          joiner_cert_pem=proof.joiner_cert_pem, joiner_name=proof.joiner_name,
                          joiner_addresses=proof.joiner_addresses)


def pair_request_from_wire(message: pb.PairRequest) -> PairProof:
    if len(message.nonce) != NONCE_BYTES or len(message.proof) != PROOF_BYTES:
        raise ProtocolViolation("pairing nonce or proof has the wrong length")
    if len(message.joiner_cert_pem) > 16 * 1024 or len(message.joiner_addresses) > 16:
        raise ProtocolViolation("pairing request is too large")
    return PairProof(invite_id=message.invite_id, nonce=message.nonce, proof=message.proof,
                     joiner_cert_pem=message.joiner_cert_pem,
                     joiner_name=message.joiner_name[:100],
                     joiner_addresses=tuple(a[:300] for a in message.joiner_addresses))


def pair_grant_to_wire(grant: PairGrant) -> pb.PairResponse:
    return pb.PairResponse(inviter_name=grant.inviter_name,
                           inviter_addresses=grant.inviter_addresses,
                           collections=grant.collections,
                           joiner_read_only=grant.joiner_read_only)


def pair_grant_from_wire(message: pb.PairResponse) -> PairGrant:
    try:
        collections = tuple(check_collection_name(c) for c in message.collections)
    except InvalidArgument as error:
        raise _violation("pairing grant", error) from None
    return PairGrant(inviter_name=message.inviter_name[:100],
                     inviter_addresses=tuple(message.inviter_addresses),
                     collections=collections, joiner_read_only=message.joiner_read_only)



# --- bundles ------------------------------------------------------------------------------

MAX_BUNDLE_BYTES = 64 * 1024 * 1024 * 1024


def offer_to_wire(offer: BundleOffer | None, whole: bytes | None = None) -> pb.BundleOffer:
    if offer is None:
        return pb.BundleOffer(has_bundle=False)
    block_map = offer.block_map
    return pb.BundleOffer(has_bundle=True, manifest=manifest_to_bytes(offer.manifest),
                          size_bytes=block_map.size_bytes,
                          block_size_bytes=block_map.block_size_bytes,
                          block_sha256=list(block_map.hashes), whole_bundle=whole or b"")


def offer_from_wire(message: pb.BundleOffer) -> BundleOffer | None:
    """The peer's offer (None: it has no bundle), checked: a parsable, valid manifest and a
    block map whose block count and hash lengths fit the stated size."""
    if not message.has_bundle:
        return None
    try:
        manifest = manifest_from_bytes(message.manifest)
    except BundleCorrupt as error:
        raise _violation("bundle manifest", error) from None
    size, block_size = message.size_bytes, message.block_size_bytes
    if not 0 < size <= MAX_BUNDLE_BYTES or not (MIN_BLOCK_SIZE_BYTES
                                                <= block_size <= MAX_BLOCK_SIZE_BYTES):
        raise ProtocolViolation(f"peer sent an invalid block map: {size} bytes in blocks of "
                                f"{block_size}")
    hashes = tuple(message.block_sha256)
    if len(hashes) != block_count(size, block_size) or any(
            len(digest) != SHA256_BYTES for digest in hashes):
        raise ProtocolViolation("peer sent a block map that does not fit the bundle's size")
    return BundleOffer(manifest=manifest, block_map=BlockMap(
        size_bytes=size, block_size_bytes=block_size, hashes=hashes))


def block_request_from_wire(message: pb.FetchBlocksRequest) -> tuple[str, str, list[int]]:
    """(collection, bundle id, block indexes), bounded by ``MAX_BLOCKS_PER_REQUEST``."""
    indexes = list(message.blocks)
    if not indexes or len(indexes) > MAX_BLOCKS_PER_REQUEST or len(set(indexes)) != len(indexes):
        raise ProtocolViolation(f"a block request names 1 to {MAX_BLOCKS_PER_REQUEST} distinct "
                                f"blocks, not {len(indexes)}")
    try:
        collection = check_collection_name(message.collection)
    except InvalidArgument as error:
        raise _violation("collection name", error) from None
    return collection, message.bundle_id, indexes
