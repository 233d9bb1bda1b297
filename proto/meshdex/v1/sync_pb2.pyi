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
    __slots__ = ("collection", "config", "changes", "last_seq")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    collection: str
    config: CollectionConfig
    changes: _containers.RepeatedCompositeFieldContainer[WireChange]
    last_seq: int
    def __init__(self, collection: _Optional[str] = ..., config: _Optional[_Union[CollectionConfig, _Mapping]] = ..., changes: _Optional[_Iterable[_Union[WireChange, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("collection", "seq")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    collection: str
    seq: int
    def __init__(self, collection: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

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
