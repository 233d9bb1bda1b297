from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BundleEmbeddingFingerprint(_message.Message):
    __slots__ = ("model_id", "model_hash", "precision", "max_seq_length", "pooling", "normalize", "dim", "metric")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_hash: str
    precision: str
    max_seq_length: int
    pooling: str
    normalize: bool
    dim: int
    metric: str
    def __init__(self, model_id: _Optional[str] = ..., model_hash: _Optional[str] = ..., precision: _Optional[str] = ..., max_seq_length: _Optional[int] = ..., pooling: _Optional[str] = ..., normalize: _Optional[bool] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ...) -> None: ...

class BundleHlc(_message.Message):
    __slots__ = ("physical_ms", "logical", "device_id")
    PHYSICAL_MS_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    physical_ms: int
    logical: int
    device_id: str
    def __init__(self, physical_ms: _Optional[int] = ..., logical: _Optional[int] = ..., device_id: _Optional[str] = ...) -> None: ...

class BundleStoreState(_message.Message):
    __slots__ = ("seq_watermarks", "max_hlc")
    class SeqWatermarksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SEQ_WATERMARKS_FIELD_NUMBER: _ClassVar[int]
    MAX_HLC_FIELD_NUMBER: _ClassVar[int]
    seq_watermarks: _containers.ScalarMap[str, int]
    max_hlc: BundleHlc
    def __init__(self, seq_watermarks: _Optional[_Mapping[str, int]] = ..., max_hlc: _Optional[_Union[BundleHlc, _Mapping]] = ...) -> None: ...

class BundleSection(_message.Message):
    __slots__ = ("name", "offset", "length", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    length: int
    sha256: bytes
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class BundleCacheManifest(_message.Message):
    __slots__ = ("node_count", "fingerprint_digest")
    NODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    node_count: int
    fingerprint_digest: str
    def __init__(self, node_count: _Optional[int] = ..., fingerprint_digest: _Optional[str] = ...) -> None: ...

class BundleRerankBound(_message.Message):
    __slots__ = ("levels", "score_errors", "sample_queries", "score_slope", "covered_nodes")
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    SCORE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    SCORE_SLOPE_FIELD_NUMBER: _ClassVar[int]
    COVERED_NODES_FIELD_NUMBER: _ClassVar[int]
    levels: _containers.RepeatedScalarFieldContainer[float]
    score_errors: _containers.RepeatedScalarFieldContainer[float]
    sample_queries: int
    score_slope: float
    covered_nodes: int
    def __init__(self, levels: _Optional[_Iterable[float]] = ..., score_errors: _Optional[_Iterable[float]] = ..., sample_queries: _Optional[int] = ..., score_slope: _Optional[float] = ..., covered_nodes: _Optional[int] = ...) -> None: ...

class BundleManifest(_message.Message):
    __slots__ = ("format_version", "bundle_id", "collection", "generation", "parent_generation", "device_id", "created_at", "store_state", "build_params_json", "fingerprint", "sections", "cache", "signer_device_id", "signature", "collection_config_json", "rerank_bound")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PARENT_GENERATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STORE_STATE_FIELD_NUMBER: _ClassVar[int]
    BUILD_PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RERANK_BOUND_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    bundle_id: str
    collection: str
    generation: int
    parent_generation: int
    device_id: str
    created_at: BundleHlc
    store_state: BundleStoreState
    build_params_json: str
    fingerprint: BundleEmbeddingFingerprint
    sections: _containers.RepeatedCompositeFieldContainer[BundleSection]
    cache: BundleCacheManifest
    signer_device_id: str
    signature: bytes
    collection_config_json: str
    rerank_bound: BundleRerankBound
    def __init__(self, format_version: _Optional[int] = ..., bundle_id: _Optional[str] = ..., collection: _Optional[str] = ..., generation: _Optional[int] = ..., parent_generation: _Optional[int] = ..., device_id: _Optional[str] = ..., created_at: _Optional[_Union[BundleHlc, _Mapping]] = ..., store_state: _Optional[_Union[BundleStoreState, _Mapping]] = ..., build_params_json: _Optional[str] = ..., fingerprint: _Optional[_Union[BundleEmbeddingFingerprint, _Mapping]] = ..., sections: _Optional[_Iterable[_Union[BundleSection, _Mapping]]] = ..., cache: _Optional[_Union[BundleCacheManifest, _Mapping]] = ..., signer_device_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., collection_config_json: _Optional[str] = ..., rerank_bound: _Optional[_Union[BundleRerankBound, _Mapping]] = ...) -> None: ...
