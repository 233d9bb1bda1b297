"""The ``.leann`` container: one file, a checksummed header, a protobuf manifest, and sections
aligned for mmap.

Byte layout (format version 1, all integers little-endian)::

    offset  size  field
    ------  ----  -----------------------------------------------------------------------
         0     8  magic b"\\x89LEANN\\r\\n" (the high byte and CR LF catch 7-bit and
                  text-mode transfers, as PNG's does)
         8     4  format version, uint32
        12     4  header length in bytes, uint32 (96 in version 1)
        16     8  manifest offset, uint64 (= header length)
        24     8  manifest length in bytes, uint64
        32    32  SHA-256 of the manifest bytes
        64    32  SHA-256 of header bytes [0, 64)
        96     M  manifest: meshdex.v1.BundleManifest (proto/meshdex/v1/bundle.proto)
      ....        zero padding up to the next multiple of 4096
         A    L1  first section  (A = align(96 + M))
      ....        zero padding up to the next multiple of 4096
        ...       ... every present section, in SECTION_NAMES order; the file ends exactly
                  where the last section ends (or the manifest, if there are no sections)

The section table is the manifest's ``sections`` list: name, absolute offset, length and
SHA-256 of each section. The first 16 bytes and the header's trailing SHA-256 keep their
meaning in every format version, so a reader checks the header's integrity before it trusts
the version, and refuses a newer version with a message naming both.

A reader trusts nothing: the header checksum, manifest checksum, manifest validity, the exact
position of every section (each at the next aligned offset after the previous one, in the
fixed order, so sections never overlap or leave gaps), zero padding and the exact file size
are checked on every open; section SHA-256s are checked at open (``verify="full"``), on first
access (``"lazy"``) or not at all (``"none"``, for tools that only inspect). No pickle: section
bytes are opaque to this module and interpreted by the engine.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from meshdex.index.bundle_manifest import (
    FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    BundleManifest,
    SectionEntry,
    check_manifest,
    manifest_from_bytes,
    manifest_to_bytes,
)
from meshdex.index.errors import BundleCorrupt, BundleVersionError, InvalidArgument

__all__ = [
    "ALIGNMENT_BYTES",
    "CACHE_SECTION_NAMES",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "MAX_MANIFEST_BYTES",
    "SECTION_NAMES",
    "SUPPORTED_FORMAT_VERSIONS",
    "EncodedBundle",
    "Signer",
    "align_up",
    "encode_bundle",
    "read_layout",
    "check_section_digest",
    "verify_buffer",
]

MAGIC = b"\x89LEANN\r\n"
ALIGNMENT_BYTES = 4096  # page size: every section can be mmapped and viewed in place
HEADER_BYTES = 96
MAX_HEADER_BYTES = ALIGNMENT_BYTES  # any version's header must fit before the first page
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_STABLE_PREFIX = struct.Struct("<8sII")  # magic, format version, header length
_HEADER_V1 = struct.Struct("<8sIIQQ32s")  # ... manifest offset, manifest length, manifest SHA
_DIGEST_BYTES = 32

# The fixed set of section names, in file order. The engine produces them; unknown names are
# refused on write and on read.
SECTION_NAMES: tuple[str, ...] = (
    "graph_offsets",
    "graph_neighbors",
    "entry_points",
    "codes",
    "codebook",
    "id_map",
    "tombstones",
    "cache_ids",
    "cache_vectors",
    "full_embeddings",
    "documents",
)
# The hot-embedding cache: dropped together when the cache's fingerprint is wrong.
CACHE_SECTION_NAMES: tuple[str, ...] = ("cache_ids", "cache_vectors")
_SECTION_ORDER = {name: index for index, name in enumerate(SECTION_NAMES)}

_CORRUPT_HINT = "the file is damaged or was cut short: copy it again, or rebuild the index"


def align_up(value: int, alignment: int = ALIGNMENT_BYTES) -> int:
    """The smallest multiple of ``alignment`` that is >= ``value``."""
    return -(-value // alignment) * alignment


@dataclass(frozen=True, kw_only=True)
class EncodedBundle:
    """A bundle ready to write: the final manifest and the file's bytes as chunks, in order
    (header, manifest, padding, sections; section chunks are views, not copies)."""

    manifest: BundleManifest
    size_bytes: int
    chunks: tuple[bytes | memoryview, ...]


def _as_bytes_view(name: str, data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError as error:
        raise InvalidArgument(
            f"section {name!r} is a {type(data).__name__}, not bytes-like", op="write bundle"
        ) from error
    if not view.c_contiguous:
        raise InvalidArgument(f"section {name!r} is not contiguous", op="write bundle")
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


def _section_entries(sections: Mapping[str, object]) -> tuple[list[SectionEntry], list[memoryview]]:
    unknown = sorted(set(sections) - set(SECTION_NAMES))
    if unknown:
        raise InvalidArgument(
            f"unknown bundle section name(s) {unknown}",
            op="write bundle",
            hint=f"section names are fixed: {', '.join(SECTION_NAMES)}",
        )
    names = sorted(sections, key=_SECTION_ORDER.__getitem__)
    views = [_as_bytes_view(name, sections[name]) for name in names]
    entries = [
        SectionEntry(name=name, offset=0, length=view.nbytes, sha256=hashlib.sha256(view).digest())
        for name, view in zip(names, views, strict=True)
    ]
    return entries, views


def _place_sections(entries: list[SectionEntry], data_start: int) -> tuple[SectionEntry, ...]:
    placed = []
    cursor = data_start
    for entry in entries:
        placed.append(replace(entry, offset=cursor))
        cursor = align_up(cursor + entry.length)
    return tuple(placed)


def _header(format_version: int, manifest_bytes: bytes) -> bytes:
    body = _HEADER_V1.pack(
        MAGIC,
        format_version,
        HEADER_BYTES,
        HEADER_BYTES,
        len(manifest_bytes),
        hashlib.sha256(manifest_bytes).digest(),
    )
    return body + hashlib.sha256(body).digest()


class Signer(Protocol):
    """Signs a bundle manifest for the device that creates it (implemented by sync)."""

    @property
    def device_id(self) -> str: ...

    def sign(self, payload: bytes) -> bytes:
        """A signature over ``payload`` (``BundleManifest.signing_payload()``)."""
        ...


def encode_bundle(
    manifest: BundleManifest,
    sections: Mapping[str, object],
    *,
    format_version: int = FORMAT_VERSION,
    signer: Signer | None = None,
) -> EncodedBundle:
    """Lay out a bundle: hash the sections, place them, and checksum manifest and header.

    The manifest's own ``sections`` are replaced by the computed ones. With a ``signer`` the
    manifest is signed by that device (over ``signing_payload()``, which leaves out the
    offsets placed afterwards); without one, signature fields are kept as given.
    ``format_version`` other than the default exists for tests of old and new readers.
    """
    entries, views = _section_entries(sections)
    manifest = replace(manifest, format_version=format_version, sections=tuple(entries))
    if signer is not None:
        manifest = replace(
            manifest,
            signer_device_id=signer.device_id,
            signature=signer.sign(manifest.signing_payload()),
        )
    check_manifest(manifest)
    # Offsets are varints inside the manifest, so the manifest's length depends on where the
    # sections start, which depends on the manifest's length. Grows monotonically: converges.
    data_start = align_up(HEADER_BYTES)
    while True:
        placed = replace(manifest, sections=_place_sections(entries, data_start))
        manifest_bytes = manifest_to_bytes(placed)
        needed = align_up(HEADER_BYTES + len(manifest_bytes))
        if needed <= data_start:
            break
        data_start = needed
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise InvalidArgument(
            f"bundle manifest is {len(manifest_bytes)} bytes, over {MAX_MANIFEST_BYTES}",
            op="write bundle",
        )
    chunks: list[bytes | memoryview] = [_header(format_version, manifest_bytes), manifest_bytes]
    cursor = HEADER_BYTES + len(manifest_bytes)
    for entry, view in zip(placed.sections, views, strict=True):
        if entry.offset > cursor:
            chunks.append(bytes(entry.offset - cursor))
        chunks.append(view)
        cursor = entry.offset + entry.length
    return EncodedBundle(manifest=placed, size_bytes=cursor, chunks=tuple(chunks))


def _corrupt(message: str, path: Path | str | None) -> BundleCorrupt:
    return BundleCorrupt(message, op="open bundle", path=path, hint=_CORRUPT_HINT)


def _check_version(version: int, path: Path | str | None) -> None:
    if version in SUPPORTED_FORMAT_VERSIONS:
        return
    readable = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
    if version > max(SUPPORTED_FORMAT_VERSIONS):
        raise BundleVersionError(
            f"bundle format version {version} is newer than this meshdex reads "
            f"(format version {readable})",
            op="open bundle",
            path=path,
            hint="upgrade meshdex on this device, or rebuild the index here",
        )
    raise BundleVersionError(
        f"bundle format version {version} is older than this meshdex reads "
        f"(format version {readable})",
        op="open bundle",
        path=path,
        hint="rebuild the index from its documents on this device",
    )


def _read_header(buffer: memoryview, path: Path | str | None) -> tuple[int, int]:
    """Check magic, header checksum and version; return (manifest offset, manifest length)."""
    size = buffer.nbytes
    if size < _STABLE_PREFIX.size:
        raise _corrupt(f"file is {size} bytes, too short for a bundle header", path)
    magic, version, header_length = _STABLE_PREFIX.unpack_from(buffer, 0)
    if magic != MAGIC:
        raise BundleCorrupt(
            "not a meshdex bundle (wrong magic bytes)",
            op="open bundle",
            path=path,
            hint="expected a .leann file written by meshdex",
        )
    if not _STABLE_PREFIX.size + _DIGEST_BYTES <= header_length <= MAX_HEADER_BYTES:
        raise _corrupt(f"header length {header_length} is out of range", path)
    if size < header_length:
        raise _corrupt(f"file is {size} bytes, shorter than its {header_length}-byte header", path)
    body_end = header_length - _DIGEST_BYTES
    if hashlib.sha256(buffer[:body_end]).digest() != bytes(buffer[body_end:header_length]):
        raise _corrupt("header checksum mismatch", path)
    _check_version(version, path)
    if header_length != HEADER_BYTES:
        raise _corrupt(f"header length {header_length} != {HEADER_BYTES} in version 1", path)
    _, _, _, manifest_offset, manifest_length, _ = _HEADER_V1.unpack_from(buffer, 0)
    if manifest_offset != HEADER_BYTES:
        raise _corrupt(f"manifest offset {manifest_offset} != {HEADER_BYTES}", path)
    if manifest_length > MAX_MANIFEST_BYTES:
        raise _corrupt(f"manifest length {manifest_length} exceeds {MAX_MANIFEST_BYTES}", path)
    if manifest_offset + manifest_length > size:
        raise _corrupt(
            f"file is {size} bytes, cut short inside the manifest "
            f"(ends at {manifest_offset + manifest_length})",
            path,
        )
    return manifest_offset, manifest_length


def _check_zero(buffer: memoryview, start: int, end: int, path: Path | str | None) -> None:
    if end > start and any(buffer[start:end]):
        raise _corrupt(f"padding bytes [{start}, {end}) are not zero", path)


def _check_sections(
    manifest: BundleManifest, manifest_end: int, size: int, path: Path | str | None
) -> None:
    """Every section known, in order, at its one valid offset; padding zero; size exact."""
    previous = -1
    cursor = align_up(manifest_end)
    end = manifest_end
    for entry in manifest.sections:
        order = _SECTION_ORDER.get(entry.name)
        if order is None:
            raise BundleCorrupt(
                f"bundle has an unknown section {entry.name!r}",
                op="open bundle",
                path=path,
                hint=f"section names are fixed: {', '.join(SECTION_NAMES)}",
            )
        if order <= previous:
            raise _corrupt(f"section {entry.name!r} is out of order or repeated", path)
        previous = order
        if entry.offset != cursor:
            raise _corrupt(
                f"section {entry.name!r} is at offset {entry.offset}, expected {cursor}", path
            )
        end = entry.offset + entry.length
        if end > size:
            raise _corrupt(
                f"file is {size} bytes, cut short inside section {entry.name!r} "
                f"(ends at {end})",
                path,
            )
        cursor = align_up(end)
    if size != end:
        raise _corrupt(f"file is {size} bytes but its sections end at {end}", path)


def read_layout(buffer: memoryview, *, path: Path | str | None = None) -> BundleManifest:
    """Validate everything but the section hashes and return the manifest.

    Raises ``BundleCorrupt`` (bad magic, checksum, bounds, layout, padding, size) or
    ``BundleVersionError`` (a format version this build does not read); never anything else
    for any input bytes.
    """
    manifest_offset, manifest_length = _read_header(buffer, path)
    manifest_end = manifest_offset + manifest_length
    manifest_bytes = bytes(buffer[manifest_offset:manifest_end])
    expected = bytes(buffer[32:64])
    if hashlib.sha256(manifest_bytes).digest() != expected:
        raise _corrupt("manifest checksum mismatch", path)
    try:
        manifest = manifest_from_bytes(manifest_bytes)
    except BundleCorrupt as error:
        raise _corrupt(error.message, path) from error
    header_version = _STABLE_PREFIX.unpack_from(buffer, 0)[1]
    if manifest.format_version != header_version:
        raise _corrupt(
            f"manifest says format version {manifest.format_version}, "
            f"header says {header_version}",
            path,
        )
    _check_sections(manifest, manifest_end, buffer.nbytes, path)
    gap_start = manifest_end
    for entry in manifest.sections:
        _check_zero(buffer, gap_start, entry.offset, path)
        gap_start = entry.offset + entry.length
    return manifest


def check_section_digest(
    buffer: memoryview, entry: SectionEntry, *, path: Path | str | None = None
) -> None:
    """Raise ``BundleCorrupt`` unless the section's bytes hash to what the manifest says.

    Bounds must already have been checked (``read_layout``).
    """
    view = buffer[entry.offset : entry.offset + entry.length]
    if hashlib.sha256(view).digest() != entry.sha256:
        raise BundleCorrupt(
            f"section {entry.name!r} does not match its SHA-256 in the manifest",
            op="verify bundle",
            path=path,
            hint=_CORRUPT_HINT,
        )


def verify_buffer(buffer: memoryview, *, path: Path | str | None = None) -> BundleManifest:
    """``read_layout`` plus every section's SHA-256: what ``open_bundle(verify="full")`` checks,
    on bytes already in memory (sync checks a received bundle with it before installing)."""
    manifest = read_layout(buffer, path=path)
    for entry in manifest.sections:
        check_section_digest(buffer, entry, path=path)
    return manifest
