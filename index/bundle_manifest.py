"""The native bundle manifest, its conversion to and from the wire message, and its validator.

Generated protobuf code stops here: everything past this module sees ``BundleManifest`` (a
plain dataclass) and only after ``check_manifest`` has accepted it. The same manifest travels
inside the ``.leann`` file and, later, over sync, so disk and wire share one schema
(``proto/meshdex/v1/bundle.proto``).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from google.protobuf.message import DecodeError
from meshdex.index.embedder import EmbeddingFingerprint
from meshdex.index.errors import BundleCorrupt, InvalidArgument
from meshdex.index.rerank_bound import RerankBound
from meshdex.proto.meshdex.v1 import bundle_pb2

__all__ = [
    "FORMAT_VERSION",
    "KNOWN_METRICS",
    "SUPPORTED_FORMAT_VERSIONS",
    "SHA256_BYTES",
    "BundleManifest",
    "CacheManifest",
    "HlcStamp",
    "SectionEntry",
    "StoreState",
    "check_manifest",
    "manifest_from_bytes",
    "manifest_to_bytes",
    "manifest_to_json",
]

# The container format this build writes, and every one it can read (bundle_format.py
# documents the layout). A reader refuses others, naming both versions.
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
SHA256_BYTES = 32
KNOWN_METRICS = frozenset({"cosine", "ip", "l2"})


@dataclass(frozen=True, order=True, kw_only=True)
class HlcStamp:
    """A hybrid logical clock stamp, field for field ``meshdex.node.hlc.HLCTimestamp`` (which
    ``index`` may not import); the zero stamp means "no writes yet"."""

    physical_ms: int = 0
    logical: int = 0
    device_id: str = ""

    def to_proto(self) -> bundle_pb2.BundleHlc:
        return bundle_pb2.BundleHlc(
            physical_ms=self.physical_ms, logical=self.logical, device_id=self.device_id
        )

    @classmethod
    def from_proto(cls, message: bundle_pb2.BundleHlc) -> HlcStamp:
        return cls(
            physical_ms=message.physical_ms, logical=message.logical, device_id=message.device_id
        )


@dataclass(frozen=True, kw_only=True)
class StoreState:
    """The document store an index was built from.

    ``seq_watermarks`` maps each device id to the highest change-log sequence number the index
    includes; ``max_hlc`` is the largest HLC stamp among those changes.
    """

    seq_watermarks: Mapping[str, int] = field(default_factory=dict)
    max_hlc: HlcStamp = field(default_factory=HlcStamp)


@dataclass(frozen=True, kw_only=True)
class SectionEntry:
    """Where one section lies in the file and what its bytes hash to."""

    name: str
    offset: int
    length: int
    sha256: bytes


@dataclass(frozen=True, kw_only=True)
class CacheManifest:
    """The hot-embedding cache: node count and the fingerprint digest its vectors came from.

    A cache whose digest differs from the graph's fingerprint must be dropped, not used.
    """

    node_count: int
    fingerprint_digest: str


@dataclass(frozen=True, kw_only=True)
class BundleManifest:
    """What a bundle holds, where it came from, and how to check its bytes.

    ``sections`` are filled in (and ``format_version`` set to ``FORMAT_VERSION``) by
    ``write_bundle``; callers building a new bundle leave them at their defaults.
    ``build_params`` is a plain JSON object so that a reader can see keys it does not know
    (and decide to rebuild) instead of failing to parse. ``collection_config`` says how the
    collection cuts and embeds passages (``{"embedder": ..., "chunking": ...}``); empty when the
    writer did not record it. ``rerank_bound`` is the code-score error calibrated at build
    time, which adaptive re-ranking stops on (None: a bundle from before calibration).
    """

    bundle_id: str
    collection: str
    generation: int
    parent_generation: int | None
    device_id: str
    created_at: HlcStamp
    store_state: StoreState
    build_params: Mapping[str, Any]
    fingerprint: EmbeddingFingerprint
    cache: CacheManifest | None = None
    collection_config: Mapping[str, Any] = field(default_factory=dict)
    rerank_bound: RerankBound | None = None
    sections: tuple[SectionEntry, ...] = ()
    format_version: int = FORMAT_VERSION
    signer_device_id: str = ""
    signature: bytes = b""

    def section_entry(self, name: str) -> SectionEntry | None:
        """The entry for ``name``, or None if the bundle has no such section."""
        for entry in self.sections:
            if entry.name == name:
                return entry
        return None

    @property
    def section_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.sections)

    def signing_payload(self) -> bytes:
        """The bytes a creating device signs: this manifest without signature or offsets.

        Offsets are left out because the container fixes them (each section at the next
        aligned position in the fixed order), and leaving them out lets a signer sign before
        the layout is computed. Names, lengths and SHA-256 of every section are included, so
        the signature covers every byte of the bundle.
        """
        unsigned = replace(
            self,
            signer_device_id="",
            signature=b"",
            sections=tuple(replace(entry, offset=0) for entry in self.sections),
        )
        return manifest_to_bytes(unsigned)

    def to_proto(self) -> bundle_pb2.BundleManifest:
        fp = self.fingerprint
        message = bundle_pb2.BundleManifest(
            format_version=self.format_version,
            bundle_id=self.bundle_id,
            collection=self.collection,
            generation=self.generation,
            parent_generation=self.parent_generation or 0,
            device_id=self.device_id,
            created_at=self.created_at.to_proto(),
            store_state=bundle_pb2.BundleStoreState(
                seq_watermarks=dict(self.store_state.seq_watermarks),
                max_hlc=self.store_state.max_hlc.to_proto(),
            ),
            build_params_json=json.dumps(dict(self.build_params), sort_keys=True),
            fingerprint=bundle_pb2.BundleEmbeddingFingerprint(
                model_id=fp.model_id,
                model_hash=fp.model_hash,
                precision=fp.precision,
                max_seq_length=fp.max_seq_length,
                pooling=fp.pooling,
                normalize=fp.normalize,
                dim=fp.dim,
                metric=fp.metric,
            ),
            sections=[
                bundle_pb2.BundleSection(
                    name=e.name, offset=e.offset, length=e.length, sha256=e.sha256
                )
                for e in self.sections
            ],
            signer_device_id=self.signer_device_id,
            signature=self.signature,
            collection_config_json=(
                json.dumps(dict(self.collection_config), sort_keys=True)
                if self.collection_config
                else ""
            ),
        )
        if self.rerank_bound is not None:
            message.rerank_bound.CopyFrom(
                bundle_pb2.BundleRerankBound(
                    levels=self.rerank_bound.levels,
                    score_errors=self.rerank_bound.score_errors,
                    score_slope=self.rerank_bound.score_slope,
                    sample_queries=self.rerank_bound.sample_queries,
                    covered_nodes=self.rerank_bound.covered_nodes,
                )
            )
        if self.cache is not None:
            message.cache.CopyFrom(
                bundle_pb2.BundleCacheManifest(
                    node_count=self.cache.node_count,
                    fingerprint_digest=self.cache.fingerprint_digest,
                )
            )
        return message

    @classmethod
    def from_proto(cls, message: bundle_pb2.BundleManifest) -> BundleManifest:
        """Convert without judging; ``check_manifest`` judges. Bad JSON is already corrupt."""
        build_params = _json_field(message.build_params_json, "build params")
        collection_config = _json_field(message.collection_config_json, "collection config")
        fp = message.fingerprint
        cache = None
        if message.HasField("cache"):
            cache = CacheManifest(
                node_count=message.cache.node_count,
                fingerprint_digest=message.cache.fingerprint_digest,
            )
        rerank_bound = None
        if message.HasField("rerank_bound"):
            bound = message.rerank_bound
            try:
                rerank_bound = RerankBound(
                    levels=tuple(bound.levels),
                    score_errors=tuple(bound.score_errors),
                    score_slope=bound.score_slope,
                    sample_queries=bound.sample_queries,
                    covered_nodes=bound.covered_nodes,
                )
            except InvalidArgument as error:
                raise BundleCorrupt(
                    f"manifest re-rank bound is invalid: {error.message}", op="read manifest"
                ) from error
        return cls(
            format_version=message.format_version,
            bundle_id=message.bundle_id,
            collection=message.collection,
            generation=message.generation,
            parent_generation=message.parent_generation or None,
            device_id=message.device_id,
            created_at=HlcStamp.from_proto(message.created_at),
            store_state=StoreState(
                seq_watermarks=dict(message.store_state.seq_watermarks),
                max_hlc=HlcStamp.from_proto(message.store_state.max_hlc),
            ),
            build_params=build_params,
            fingerprint=EmbeddingFingerprint(
                model_id=fp.model_id,
                model_hash=fp.model_hash,
                precision=fp.precision,
                max_seq_length=fp.max_seq_length,
                pooling=fp.pooling,
                normalize=fp.normalize,
                dim=fp.dim,
                metric=fp.metric,
            ),
            cache=cache,
            collection_config=collection_config,
            rerank_bound=rerank_bound,
            sections=tuple(
                SectionEntry(name=s.name, offset=s.offset, length=s.length, sha256=s.sha256)
                for s in message.sections
            ),
            signer_device_id=message.signer_device_id,
            signature=message.signature,
        )


def _json_field(text: str, what: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError as error:
        raise BundleCorrupt(
            f"manifest {what} are not valid JSON: {error}", op="read manifest"
        ) from error


def manifest_to_bytes(manifest: BundleManifest) -> bytes:
    """Deterministic wire bytes (map entries sorted), so equal manifests give equal bytes."""
    return manifest.to_proto().SerializeToString(deterministic=True)


def manifest_from_bytes(data: bytes) -> BundleManifest:
    """Parse and validate; any defect is ``BundleCorrupt``. Section names are checked by the
    container, which owns the fixed set."""
    message = bundle_pb2.BundleManifest()
    try:
        message.ParseFromString(data)
    except DecodeError as error:
        raise BundleCorrupt(f"manifest does not parse: {error}", op="read manifest") from error
    manifest = BundleManifest.from_proto(message)
    check_manifest(manifest)
    return manifest


def manifest_to_json(manifest: BundleManifest) -> dict[str, Any]:
    """A JSON-ready dict of every field (hashes and signature as hex), for tools and status."""

    def stamp(value: HlcStamp) -> dict[str, Any]:
        return asdict(value)

    return {
        "format_version": manifest.format_version,
        "bundle_id": manifest.bundle_id,
        "collection": manifest.collection,
        "generation": manifest.generation,
        "parent_generation": manifest.parent_generation,
        "device_id": manifest.device_id,
        "created_at": stamp(manifest.created_at),
        "store_state": {
            "seq_watermarks": dict(sorted(manifest.store_state.seq_watermarks.items())),
            "max_hlc": stamp(manifest.store_state.max_hlc),
        },
        "build_params": dict(manifest.build_params),
        "fingerprint": {**asdict(manifest.fingerprint), "digest": manifest.fingerprint.digest()},
        "cache": asdict(manifest.cache) if manifest.cache is not None else None,
        "collection_config": dict(manifest.collection_config),
        "rerank_bound": asdict(manifest.rerank_bound) if manifest.rerank_bound else None,
        "sections": [
            {"name": e.name, "offset": e.offset, "length": e.length, "sha256": e.sha256.hex()}
            for e in manifest.sections
        ],
        "signer_device_id": manifest.signer_device_id or None,
        "signature": manifest.signature.hex() or None,
    }


def _manifest_problems(manifest: BundleManifest) -> list[str]:
    problems: list[str] = []
    try:
        uuid.UUID(manifest.bundle_id)
    except ValueError:
        problems.append(f"bundle id {manifest.bundle_id!r} is not a UUID")
    if not manifest.collection:
        problems.append("collection name is empty")
    if manifest.generation < 1:
        problems.append(f"generation {manifest.generation} is not >= 1")
    if manifest.parent_generation is not None and not (
        0 < manifest.parent_generation < manifest.generation
    ):
        problems.append(
            f"parent generation {manifest.parent_generation} is not between 1 and "
            f"generation {manifest.generation}"
        )
    if not manifest.device_id:
        problems.append("creating device id is empty")
    if manifest.created_at.physical_ms == 0:
        problems.append("creation time (HLC) is missing")
    if not isinstance(manifest.build_params, Mapping):
        problems.append("build params are not a JSON object")
    elif any(
        isinstance(v, float) and not math.isfinite(v) for v in manifest.build_params.values()
    ):
        problems.append("build params hold a non-finite number")
    if not isinstance(manifest.collection_config, Mapping):
        problems.append("collection config is not a JSON object")
    fp = manifest.fingerprint
    if not fp.model_id or not fp.model_hash:
        problems.append("embedding fingerprint lacks a model id or model hash")
    if fp.dim < 1:
        problems.append(f"embedding dimension {fp.dim} is not >= 1")
    if fp.metric not in KNOWN_METRICS:
        problems.append(f"metric {fp.metric!r} is not one of {sorted(KNOWN_METRICS)}")
    if manifest.cache is not None and not manifest.cache.fingerprint_digest:
        problems.append("cache manifest does not name the fingerprint it was built with")
    seen: set[str] = set()
    for entry in manifest.sections:
        if entry.name in seen:
            problems.append(f"section {entry.name!r} is listed twice")
        seen.add(entry.name)
        if len(entry.sha256) != SHA256_BYTES:
            problems.append(f"section {entry.name!r} has a {len(entry.sha256)}-byte SHA-256")
    if bool(manifest.signer_device_id) != bool(manifest.signature):
        problems.append("signature and signer device id must be given together")
    return problems


def check_manifest(manifest: BundleManifest) -> None:
    """Raise ``BundleCorrupt`` listing every defect, or return if the manifest is sound.

    Checks what a manifest must satisfy on its own (ids, generations, fingerprint, section
    entries, signature pairing); layout against the file is the container's job.
    """
    problems = _manifest_problems(manifest)
    if problems:
        raise BundleCorrupt(
            "bundle manifest is invalid: " + "; ".join(problems), op="check manifest"
        )
