from google.protobuf.internal import containers as _containers
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
    __slots__ = ("name", "embedder", "chunking", "document_count", "passage_count", "model_hash", "created_at", "updated_at", "index_generation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CHUNKING_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    INDEX_GENERATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams
    document_count: int
    passage_count: int
    model_hash: str
    created_at: str
    updated_at: str
    index_generation: int
    def __init__(self, name: _Optional[str] = ..., embedder: _Optional[_Union[EmbedderSpec, _Mapping]] = ..., chunking: _Optional[_Union[ChunkingParams, _Mapping]] = ..., document_count: _Optional[int] = ..., passage_count: _Optional[int] = ..., model_hash: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., index_generation: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("collection", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[DocumentInput]
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[DocumentInput, _Mapping]]] = ...) -> None: ...

class RejectedDocument(_message.Message):
    __slots__ = ("index", "id", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("added", "updated", "unchanged", "rejected")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    added: int
    updated: int
    unchanged: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedDocument]
    def __init__(self, added: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedDocument, _Mapping]]] = ...) -> None: ...

class DeleteDocumentsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDocumentsResponse(_message.Message):
    __slots__ = ("deleted", "missing_ids")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[int] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("collection", "id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "collection", "source", "metadata_json", "text", "content_hash", "hlc", "passage_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection: str
    source: str
    metadata_json: str
    text: str
    content_hash: str
    hlc: str
    passage_count: int
    def __init__(self, id: _Optional[str] = ..., collection: _Optional[str] = ..., source: _Optional[str] = ..., metadata_json: _Optional[str] = ..., text: _Optional[str] = ..., content_hash: _Optional[str] = ..., hlc: _Optional[str] = ..., passage_count: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "top_k", "filter", "params_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: str
    top_k: int
    filter: str
    params_json: str
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[str] = ..., top_k: _Optional[int] = ..., filter: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("document_id", "source", "metadata_json", "passage", "score")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    PASSAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    source: str
    metadata_json: str
    passage: str
    score: float
    def __init__(self, document_id: _Optional[str] = ..., source: _Optional[str] = ..., metadata_json: _Optional[str] = ..., passage: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SearchStats(_message.Message):
    __slots__ = ("passages_recomputed", "model_calls", "cache_hits", "nodes_visited", "filtered_out", "model_seconds", "graph_seconds", "total_seconds")
    PASSAGES_RECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    NODES_VISITED_FIELD_NUMBER: _ClassVar[int]
    FILTERED_OUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    passages_recomputed: int
    model_calls: int
    cache_hits: int
    nodes_visited: int
    filtered_out: int
    model_seconds: float
    graph_seconds: float
    total_seconds: float
    def __init__(self, passages_recomputed: _Optional[int] = ..., model_calls: _Optional[int] = ..., cache_hits: _Optional[int] = ..., nodes_visited: _Optional[int] = ..., filtered_out: _Optional[int] = ..., model_seconds: _Optional[float] = ..., graph_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "stats")
    HITS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    stats: SearchStats
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., stats: _Optional[_Union[SearchStats, _Mapping]] = ...) -> None: ...

class BuildRequest(_message.Message):
    __slots__ = ("collection", "params_json")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    collection: str
    params_json: str
    def __init__(self, collection: _Optional[str] = ..., params_json: _Optional[str] = ...) -> None: ...

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

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("version", "data_dir", "collections", "details_json")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    version: str
    data_dir: str
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    details_json: str
    def __init__(self, version: _Optional[str] = ..., data_dir: _Optional[str] = ..., collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., details_json: _Optional[str] = ...) -> None: ...
