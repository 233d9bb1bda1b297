from meshdex.proto.meshdex.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CollectionConfig(_message.Message):
    __slots__ = ("name", "embedder", "chunking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    embedder: _node_pb2.EmbedderSpec
    chunking: _node_pb2.ChunkingParams
    def __init__(self, name: _Optional[str] = ..., embedder: _Optional[_Union[_node_pb2.EmbedderSpec, _Mapping]] = ..., chunking: _Optional[_Union[_node_pb2.ChunkingParams, _Mapping]] = ...) -> None: ...

class SharedCollection(_message.Message):
    __slots__ = ("config", "last_seq", "cursor", "watermarks")
    class WatermarksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    WATERMARKS_FIELD_NUMBER: _ClassVar[int]
    config: CollectionConfig
    last_seq: int
    cursor: int
    watermarks: _containers.ScalarMap[str, int]
    def __init__(self, config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., last_seq: _Optional[int] = ..., cursor: _Optional[int] = ..., watermarks: _Optional[_Mapping[str, int]] = ...) -> None: ...

class HelloRequest(_message.Message):
    __slots__ = ("protocol_version", "store_id", "bundle_format_versions", "collections")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FORMAT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    store_id: str
    bundle_format_versions: _containers.RepeatedScalarFieldContainer[int]
    collections: _containers.RepeatedCompositeFieldContainer[SharedCollection]
    def __init__(self, protocol_version: _Optional[int] = ..., store_id: _Optional[str] = ..., bundle_format_versions: _Optional[_Iterable[int]] = ..., collections: _Optional[_Iterable[_Union[SharedCollection, _Mapping]]] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("protocol_version", "device_id", "store_id", "bundle_format_versions", "collections", "caller_read_only", "shared_names")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FORMAT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    CALLER_READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    SHARED_NAMES_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    device_id: str
    store_id: str
    bundle_format_versions: _containers.RepeatedScalarFieldContainer[int]
    collections: _containers.RepeatedCompositeFieldContainer[SharedCollection]
    caller_read_only: bool
    shared_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, protocol_version: _Optional[int] = ..., device_id: _Optional[str] = ..., store_id: _Optional[str] = ..., bundle_format_versions: _Optional[_Iterable[int]] = ..., collections: _Optional[_Iterable[_Union[SharedCollection, _Mapping]]] = ..., caller_read_only: _Optional[bool] = ..., shared_names: _Optional[_Iterable[str]] = ...) -> None: ...

class PairChallengeRequest(_message.Message):
    __slots__ = ("invite_id",)
    INVITE_ID_FIELD_NUMBER: _ClassVar[int]
    invite_id: str
    def __init__(self, invite_id: _Optional[str] = ...) -> None: ...

class PairChallengeResponse(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class PairRequest(_message.Message):
    __slots__ = ("invite_id", "nonce", "proof", "joiner_cert_pem", "joiner_name", "joiner_addresses")
    INVITE_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    JOINER_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    JOINER_NAME_FIELD_NUMBER: _ClassVar[int]
    JOINER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    invite_id: str
    nonce: bytes
    proof: bytes
    joiner_cert_pem: str
    joiner_name: str
    joiner_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, invite_id: _Optional[str] = ..., nonce: _Optional[bytes] = ..., proof: _Optional[bytes] = ..., joiner_cert_pem: _Optional[str] = ..., joiner_name: _Optional[str] = ..., joiner_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class PairResponse(_message.Message):
    __slots__ = ("inviter_name", "inviter_addresses", "collections", "joiner_read_only")
    INVITER_NAME_FIELD_NUMBER: _ClassVar[int]
    INVITER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    JOINER_READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    inviter_name: str
    inviter_addresses: _containers.RepeatedScalarFieldContainer[str]
    collections: _containers.RepeatedScalarFieldContainer[str]
    joiner_read_only: bool
    def __init__(self, inviter_name: _Optional[str] = ..., inviter_addresses: _Optional[_Iterable[str]] = ..., collections: _Optional[_Iterable[str]] = ..., joiner_read_only: _Optional[bool] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("collection", "after_seq", "watermarks", "caller_store_id")
    class WatermarksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    WATERMARKS_FIELD_NUMBER: _ClassVar[int]
    CALLER_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    after_seq: int
    watermarks: _containers.ScalarMap[str, int]
    caller_store_id: str
    def __init__(self, collection: _Optional[str] = ..., after_seq: _Optional[int] = ..., watermarks: _Optional[_Mapping[str, int]] = ..., caller_store_id: _Optional[str] = ...) -> None: ...

class WireChange(_message.Message):
    __slots__ = ("doc_id", "deleted", "hlc", "origin_device", "origin_seq", "text", "metadata_json", "source", "has_source")
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_DEVICE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HAS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    doc_id: str
    deleted: bool
    hlc: str
    origin_device: str
    origin_seq: int
    text: str
    metadata_json: str
    source: str
    has_source: bool
    def __init__(self, doc_id: _Optional[str] = ..., deleted: _Optional[bool] = ..., hlc: _Optional[str] = ..., origin_device: _Optional[str] = ..., origin_seq: _Optional[int] = ..., text: _Optional[str] = ..., metadata_json: _Optional[str] = ..., source: _Optional[str] = ..., has_source: _Optional[bool] = ...) -> None: ...

class ChangeBatch(_message.Message):
    __slots__ = ("collection", "config", "changes", "last_seq", "sender_store_id", "conflicts")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    SENDER_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    config: CollectionConfig
    changes: _containers.RepeatedCompositeFieldContainer[WireChange]
    last_seq: int
    sender_store_id: str
    conflicts: _containers.RepeatedCompositeFieldContainer[ConflictInfo]
    def __init__(self, collection: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[WireChange, _Mapping]]] = ..., last_seq: _Optional[int] = ..., sender_store_id: _Optional[str] = ..., conflicts: _Optional[_Iterable[_Union[ConflictInfo, _Mapping]]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("collection", "seq", "caller_store_id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CALLER_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    seq: int
    caller_store_id: str
    def __init__(self, collection: _Optional[str] = ..., seq: _Optional[int] = ..., caller_store_id: _Optional[str] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("cursor", "applied", "ignored", "conflicts")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    applied: int
    ignored: int
    conflicts: int
    def __init__(self, cursor: _Optional[int] = ..., applied: _Optional[int] = ..., ignored: _Optional[int] = ..., conflicts: _Optional[int] = ...) -> None: ...

class ChangedRequest(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collections: _Optional[_Iterable[str]] = ...) -> None: ...

class ChangedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BundleOfferRequest(_message.Message):
    __slots__ = ("collection", "whole_bundle_max_bytes")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    WHOLE_BUNDLE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    whole_bundle_max_bytes: int
    def __init__(self, collection: _Optional[str] = ..., whole_bundle_max_bytes: _Optional[int] = ...) -> None: ...

class BundleOffer(_message.Message):
    __slots__ = ("has_bundle", "manifest", "size_bytes", "block_size_bytes", "block_sha256", "whole_bundle")
    HAS_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SHA256_FIELD_NUMBER: _ClassVar[int]
    WHOLE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    has_bundle: bool
    manifest: bytes
    size_bytes: int
    block_size_bytes: int
    block_sha256: _containers.RepeatedScalarFieldContainer[bytes]
    whole_bundle: bytes
    def __init__(self, has_bundle: _Optional[bool] = ..., manifest: _Optional[bytes] = ..., size_bytes: _Optional[int] = ..., block_size_bytes: _Optional[int] = ..., block_sha256: _Optional[_Iterable[bytes]] = ..., whole_bundle: _Optional[bytes] = ...) -> None: ...

class FetchBlocksRequest(_message.Message):
    __slots__ = ("collection", "bundle_id", "blocks")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    bundle_id: str
    blocks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection: _Optional[str] = ..., bundle_id: _Optional[str] = ..., blocks: _Optional[_Iterable[int]] = ...) -> None: ...

class BlockRun(_message.Message):
    __slots__ = ("first_block", "data")
    FIRST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    first_block: int
    data: bytes
    def __init__(self, first_block: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class IdentityRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IdentityResponse(_message.Message):
    __slots__ = ("device_id", "certificate_path")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PATH_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    certificate_path: str
    def __init__(self, device_id: _Optional[str] = ..., certificate_path: _Optional[str] = ...) -> None: ...

class CreateInviteRequest(_message.Message):
    __slots__ = ("collections", "read_only", "ttl_s")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    ttl_s: float
    def __init__(self, collections: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ..., ttl_s: _Optional[float] = ...) -> None: ...

class CreateInviteResponse(_message.Message):
    __slots__ = ("token", "expires_at", "collections", "read_only")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: float
    collections: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[float] = ..., collections: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("token", "name")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    token: str
    name: str
    def __init__(self, token: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AddPeerRequest(_message.Message):
    __slots__ = ("device_id", "address", "collections", "read_only", "name")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    address: str
    collections: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    name: str
    def __init__(self, device_id: _Optional[str] = ..., address: _Optional[str] = ..., collections: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ..., name: _Optional[str] = ...) -> None: ...

class RemovePeerRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class ForgetUnpairedRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ForgetUnpairedResponse(_message.Message):
    __slots__ = ("store_ids",)
    STORE_IDS_FIELD_NUMBER: _ClassVar[int]
    store_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PeerCollectionsRequest(_message.Message):
    __slots__ = ("device_id", "collections")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    collections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_id: _Optional[str] = ..., collections: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[_node_pb2.PeerInfo]
    def __init__(self, peers: _Optional[_Iterable[_Union[_node_pb2.PeerInfo, _Mapping]]] = ...) -> None: ...

class SyncNowRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class CollectionSyncReport(_message.Message):
    __slots__ = ("collection", "received", "sent", "conflicts", "error", "bundle_bytes_fetched", "bundle_bytes_total", "blocks_fetched", "blocks_reused", "decision", "reason")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BYTES_FETCHED_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FETCHED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_REUSED_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    received: int
    sent: int
    conflicts: int
    error: str
    bundle_bytes_fetched: int
    bundle_bytes_total: int
    blocks_fetched: int
    blocks_reused: int
    decision: str
    reason: str
    def __init__(self, collection: _Optional[str] = ..., received: _Optional[int] = ..., sent: _Optional[int] = ..., conflicts: _Optional[int] = ..., error: _Optional[str] = ..., bundle_bytes_fetched: _Optional[int] = ..., bundle_bytes_total: _Optional[int] = ..., blocks_fetched: _Optional[int] = ..., blocks_reused: _Optional[int] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SessionSyncReport(_message.Message):
    __slots__ = ("peer", "name", "collections", "error", "not_shared_back", "held_read_only")
    PEER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NOT_SHARED_BACK_FIELD_NUMBER: _ClassVar[int]
    HELD_READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    peer: str
    name: str
    collections: _containers.RepeatedCompositeFieldContainer[CollectionSyncReport]
    error: str
    not_shared_back: _containers.RepeatedScalarFieldContainer[str]
    held_read_only: bool
    def __init__(self, peer: _Optional[str] = ..., name: _Optional[str] = ..., collections: _Optional[_Iterable[_Union[CollectionSyncReport, _Mapping]]] = ..., error: _Optional[str] = ..., not_shared_back: _Optional[_Iterable[str]] = ..., held_read_only: _Optional[bool] = ...) -> None: ...

class SyncNowResponse(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[SessionSyncReport]
    def __init__(self, reports: _Optional[_Iterable[_Union[SessionSyncReport, _Mapping]]] = ...) -> None: ...

class ListConflictsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class ConflictInfo(_message.Message):
    __slots__ = ("collection", "doc_id", "losing_hlc", "winning_hlc", "origin_device", "text", "metadata_json", "source", "deleted", "has_text", "has_source")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOC_ID_FIELD_NUMBER: _ClassVar[int]
    LOSING_HLC_FIELD_NUMBER: _ClassVar[int]
    WINNING_HLC_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_DEVICE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HAS_TEXT_FIELD_NUMBER: _ClassVar[int]
    HAS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    doc_id: str
    losing_hlc: str
    winning_hlc: str
    origin_device: str
    text: str
    metadata_json: str
    source: str
    deleted: bool
    has_text: bool
    has_source: bool
    def __init__(self, collection: _Optional[str] = ..., doc_id: _Optional[str] = ..., losing_hlc: _Optional[str] = ..., winning_hlc: _Optional[str] = ..., origin_device: _Optional[str] = ..., text: _Optional[str] = ..., metadata_json: _Optional[str] = ..., source: _Optional[str] = ..., deleted: _Optional[bool] = ..., has_text: _Optional[bool] = ..., has_source: _Optional[bool] = ...) -> None: ...

class BuildOnRequest(_message.Message):
    __slots__ = ("peer", "build")
    PEER_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    peer: str
    build: _node_pb2.BuildRequest
    def __init__(self, peer: _Optional[str] = ..., build: _Optional[_Union[_node_pb2.BuildRequest, _Mapping]] = ...) -> None: ...

class ListConflictsResponse(_message.Message):
    __slots__ = ("conflicts",)
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[ConflictInfo]
    def __init__(self, conflicts: _Optional[_Iterable[_Union[ConflictInfo, _Mapping]]] = ...) -> None: ...
