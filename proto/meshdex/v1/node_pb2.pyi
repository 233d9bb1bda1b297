from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedderSpec(_message.Message):
    __slots__ = ("kind", "model_id", "precision", "url", "api_key_env")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ENV_FIELD_NUMBER: _ClassVar[int]
    kind: str
    model_id: str
    precision: str
    url: str
    api_key_env: str
    def __init__(self, kind: _Optional[str] = ..., model_id: _Optional[str] = ..., precision: _Optional[str] = ..., url: _Optional[str] = ..., api_key_env: _Optional[str] = ...) -> None: ...

class ChunkingParams(_message.Message):
    __slots__ = ("max_chars", "overlap_chars")
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_CHARS_FIELD_NUMBER: _ClassVar[int]
    max_chars: int
    overlap_chars: int
    def __init__(self, max_chars: _Optional[int] = ..., overlap_chars: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "embedder", "chunking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams
    def __init__(self, name: _Optional[str] = ..., embedder: _Optional[_Union[EmbedderSpec, _Mapping]] = ..., chunking: _Optional[_Union[ChunkingParams, _Mapping]] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "embedder", "chunking", "created_ms", "updated_ms", "document_count", "passage_count", "tombstone_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONE_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams
    created_ms: int
    updated_ms: int
    document_count: int
    passage_count: int
    tombstone_count: int
    def __init__(self, name: _Optional[str] = ..., embedder: _Optional[_Union[EmbedderSpec, _Mapping]] = ..., chunking: _Optional[_Union[ChunkingParams, _Mapping]] = ..., created_ms: _Optional[int] = ..., updated_ms: _Optional[int] = ..., document_count: _Optional[int] = ..., passage_count: _Optional[int] = ..., tombstone_count: _Optional[int] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexCompactionInfo(_message.Message):
    __slots__ = ("collection", "dropped_passages", "before_bytes", "after_bytes", "damaged")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DROPPED_PASSAGES_FIELD_NUMBER: _ClassVar[int]
    BEFORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    AFTER_BYTES_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    dropped_passages: int
    before_bytes: int
    after_bytes: int
    damaged: str
    def __init__(self, collection: _Optional[str] = ..., dropped_passages: _Optional[int] = ..., before_bytes: _Optional[int] = ..., after_bytes: _Optional[int] = ..., damaged: _Optional[str] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("before_bytes", "after_bytes", "tombstones_dropped", "indexes", "tombstones_kept", "waiting_for_peers", "waiting_for_unpaired")
    BEFORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    AFTER_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_KEPT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_PEERS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_UNPAIRED_FIELD_NUMBER: _ClassVar[int]
    before_bytes: int
    after_bytes: int
    tombstones_dropped: int
    indexes: _containers.RepeatedCompositeFieldContainer[IndexCompactionInfo]
    tombstones_kept: int
    waiting_for_peers: _containers.RepeatedScalarFieldContainer[str]
    waiting_for_unpaired: int
    def __init__(self, before_bytes: _Optional[int] = ..., after_bytes: _Optional[int] = ..., tombstones_dropped: _Optional[int] = ..., indexes: _Optional[_Iterable[_Union[IndexCompactionInfo, _Mapping]]] = ..., tombstones_kept: _Optional[int] = ..., waiting_for_peers: _Optional[_Iterable[str]] = ..., waiting_for_unpaired: _Optional[int] = ...) -> None: ...

class DocumentInput(_message.Message):
    __slots__ = ("id", "text", "source", "metadata_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    source: str
    metadata_json: str
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., source: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "documents", "create_missing")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_MISSING_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[DocumentInput]
    create_missing: bool
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[DocumentInput, _Mapping]]] = ..., create_missing: _Optional[bool] = ...) -> None: ...

class ItemOutcome(_message.Message):
    __slots__ = ("position", "id", "outcome", "reason")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[ItemOutcome.Outcome]
        ADDED: _ClassVar[ItemOutcome.Outcome]
        UNCHANGED: _ClassVar[ItemOutcome.Outcome]
        UPDATED: _ClassVar[ItemOutcome.Outcome]
        REJECTED: _ClassVar[ItemOutcome.Outcome]
    OUTCOME_UNSPECIFIED: ItemOutcome.Outcome
    ADDED: ItemOutcome.Outcome
    UNCHANGED: ItemOutcome.Outcome
    UPDATED: ItemOutcome.Outcome
    REJECTED: ItemOutcome.Outcome
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    position: int
    id: str
    outcome: ItemOutcome.Outcome
    reason: str
    def __init__(self, position: _Optional[int] = ..., id: _Optional[str] = ..., outcome: _Optional[_Union[ItemOutcome.Outcome, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("collection", "items", "created_collection")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[ItemOutcome]
    created_collection: bool
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ItemOutcome, _Mapping]]] = ..., created_collection: _Optional[bool] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("collection", "ids", "sources")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedCompositeFieldContainer[SourceScope]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[_Union[SourceScope, _Mapping]]] = ...) -> None: ...

class SourceScope(_message.Message):
    __slots__ = ("owner_id", "separator", "keep")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    separator: str
    keep: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, owner_id: _Optional[str] = ..., separator: _Optional[str] = ..., keep: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("collection", "deleted", "not_found")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    collection: str
    deleted: _containers.RepeatedScalarFieldContainer[str]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., deleted: _Optional[_Iterable[str]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("collection", "id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "collection", "source", "metadata_json", "text", "content_hash", "hlc", "passage_keys")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_KEYS_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection: str
    source: str
    metadata_json: str
    text: str
    content_hash: str
    hlc: str
    passage_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, id: _Optional[str] = ..., collection: _Optional[str] = ..., source: _Optional[str] = ..., metadata_json: _Optional[str] = ..., text: _Optional[str] = ..., content_hash: _Optional[str] = ..., hlc: _Optional[str] = ..., passage_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("collection", "id_prefix", "limit")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id_prefix: str
    limit: int
    def __init__(self, collection: _Optional[str] = ..., id_prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DocumentSummary(_message.Message):
    __slots__ = ("id", "source", "size_bytes", "passages", "hlc")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    size_bytes: int
    passages: int
    hlc: str
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., size_bytes: _Optional[int] = ..., passages: _Optional[int] = ..., hlc: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "top_k", "filter", "params_json", "mode", "recall_target")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RECALL_TARGET_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: str
    top_k: int
    filter: str
    params_json: str
    mode: str
    recall_target: float
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[str] = ..., params_json: _Optional[str] = ..., mode: _Optional[str] = ..., recall_target: _Optional[float] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("document_id", "source", "metadata_json", "passage", "score", "similarity", "bm25")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    BM25_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    source: str
    metadata_json: str
    passage: str
    score: float
    similarity: float
    bm25: float
    def __init__(self, document_id: _Optional[str] = ..., source: _Optional[str] = ..., metadata_json: _Optional[str] = ..., passage: _Optional[str] = ..., score: _Optional[float] = ..., similarity: _Optional[float] = ..., bm25: _Optional[float] = ...) -> None: ...

class SearchStats(_message.Message):
    __slots__ = ("passages_recomputed", "model_calls", "cache_hits", "nodes_visited", "filtered_out", "model_seconds", "graph_seconds", "total_seconds", "strategy", "reranked", "rerank_stop", "memo_hits")
    PASSAGES_RECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    NODES_VISITED_FIELD_NUMBER: _ClassVar[int]
    FILTERED_OUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    RERANKED_FIELD_NUMBER: _ClassVar[int]
    RERANK_STOP_FIELD_NUMBER: _ClassVar[int]
    MEMO_HITS_FIELD_NUMBER: _ClassVar[int]
    passages_recomputed: int
    model_calls: int
    cache_hits: int
    nodes_visited: int
    filtered_out: int
    model_seconds: float
    graph_seconds: float
    total_seconds: float
    strategy: str
    reranked: int
    rerank_stop: str
    memo_hits: int
    def __init__(self, passages_recomputed: _Optional[int] = ..., model_calls: _Optional[int] = ..., cache_hits: _Optional[int] = ..., nodes_visited: _Optional[int] = ..., filtered_out: _Optional[int] = ..., model_seconds: _Optional[float] = ..., graph_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ..., strategy: _Optional[str] = ..., reranked: _Optional[int] = ..., rerank_stop: _Optional[str] = ..., memo_hits: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("collection", "hits", "stats", "index_behind")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    INDEX_BEHIND_FIELD_NUMBER: _ClassVar[int]
    collection: str
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    stats: SearchStats
    index_behind: bool
    def __init__(self, collection: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., stats: _Optional[_Union[SearchStats, _Mapping]] = ..., index_behind: _Optional[bool] = ...) -> None: ...

class BuildRequest(_message.Message):
    __slots__ = ("collection", "params_json", "rebuild")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    REBUILD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    params_json: str
    rebuild: bool
    def __init__(self, collection: _Optional[str] = ..., params_json: _Optional[str] = ..., rebuild: _Optional[bool] = ...) -> None: ...

class BuildProgress(_message.Message):
    __slots__ = ("stage", "done_items", "total_items", "done", "summary_json")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done_items: int
    total_items: int
    done: bool
    summary_json: str
    def __init__(self, stage: _Optional[str] = ..., done_items: _Optional[int] = ..., total_items: _Optional[int] = ..., done: _Optional[bool] = ..., summary_json: _Optional[str] = ...) -> None: ...

class PinRequest(_message.Message):
    __slots__ = ("collection", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: str
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class UnpinRequest(_message.Message):
    __slots__ = ("collection", "filter", "all")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: str
    all: bool
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class UnpinResponse(_message.Message):
    __slots__ = ("summary_json",)
    SUMMARY_JSON_FIELD_NUMBER: _ClassVar[int]
    summary_json: str
    def __init__(self, summary_json: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("data_dir", "device_id", "last_seq", "max_hlc", "store_bytes", "collections", "indexes", "decisions", "peers", "conflicts", "store_id")
    class ConflictsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MAX_HLC_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    data_dir: str
    device_id: str
    last_seq: int
    max_hlc: str
    store_bytes: int
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexSummary]
    decisions: _containers.RepeatedCompositeFieldContainer[IndexDecision]
    peers: _containers.RepeatedCompositeFieldContainer[PeerInfo]
    conflicts: _containers.ScalarMap[str, int]
    store_id: str
    def __init__(self, data_dir: _Optional[str] = ..., device_id: _Optional[str] = ..., last_seq: _Optional[int] = ..., max_hlc: _Optional[str] = ..., store_bytes: _Optional[int] = ..., collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., indexes: _Optional[_Iterable[_Union[IndexSummary, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[IndexDecision, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[PeerInfo, _Mapping]]] = ..., conflicts: _Optional[_Mapping[str, int]] = ..., store_id: _Optional[str] = ...) -> None: ...

class PeerInfo(_message.Message):
    __slots__ = ("device_id", "name", "addresses", "collections", "mode", "added_at", "last_contact", "last_sync", "last_error", "lag", "held_read_only")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    HELD_READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    collections: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    added_at: float
    last_contact: float
    last_sync: float
    last_error: str
    lag: int
    held_read_only: bool
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., collections: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ..., added_at: _Optional[float] = ..., last_contact: _Optional[float] = ..., last_sync: _Optional[float] = ..., last_error: _Optional[str] = ..., lag: _Optional[int] = ..., held_read_only: _Optional[bool] = ...) -> None: ...

class IndexSummary(_message.Message):
    __slots__ = ("collection", "generation", "passages", "bundle_bytes", "model_id", "model_hash", "stale", "damaged", "waiting_for_documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    generation: int
    passages: int
    bundle_bytes: int
    model_id: str
    model_hash: str
    stale: bool
    damaged: str
    waiting_for_documents: bool
    def __init__(self, collection: _Optional[str] = ..., generation: _Optional[int] = ..., passages: _Optional[int] = ..., bundle_bytes: _Optional[int] = ..., model_id: _Optional[str] = ..., model_hash: _Optional[str] = ..., stale: _Optional[bool] = ..., damaged: _Optional[str] = ..., waiting_for_documents: _Optional[bool] = ...) -> None: ...

class IndexDecision(_message.Message):
    __slots__ = ("at_ms", "collection", "trigger", "decision", "reasons", "generation")
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    at_ms: int
    collection: str
    trigger: str
    decision: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    generation: int
    def __init__(self, at_ms: _Optional[int] = ..., collection: _Optional[str] = ..., trigger: _Optional[str] = ..., decision: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., generation: _Optional[int] = ...) -> None: ...
