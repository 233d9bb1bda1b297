"""The ``documents`` section: a collection's documents carried inside a bundle.

``meshdex bundle export --with-documents`` puts them here so one file carries a whole
collection to a device that has nothing. Layout: the 8 bytes ``b"MDXDOCS\\x01"`` then one zlib
stream of UTF-8 JSON lines, one JSON object per document. The record fields are the caller's
(the node layer's document record); this module only guarantees a lossless, pickle-free round
trip and bounded memory on read: records are decoded one at a time, and a record longer than
``MAX_RECORD_BYTES`` is refused instead of buffered, so a hostile stream cannot exhaust memory.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from meshdex.index.errors import BundleCorrupt, InvalidArgument

__all__ = ["DOCUMENTS_MAGIC", "MAX_RECORD_BYTES", "decode_documents", "encode_documents"]

DOCUMENTS_MAGIC = b"MDXDOCS\x01"
MAX_RECORD_BYTES = 64 * 1024 * 1024
COMPRESSION_LEVEL = 6
_READ_CHUNK_BYTES = 1024 * 1024


def encode_documents(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Compress ``records`` (JSON-serialisable mappings) into a documents section.

    Raises ``InvalidArgument`` for a record that is not JSON-serialisable, holds NaN or
    infinity, or is longer than ``MAX_RECORD_BYTES``.
    """
    compressor = zlib.compressobj(COMPRESSION_LEVEL)
    parts = [DOCUMENTS_MAGIC]
    for position, record in enumerate(records):
        try:
            line = json.dumps(
                dict(record), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
        except (TypeError, ValueError) as error:
            raise InvalidArgument(
                f"document record {position} cannot be stored as JSON: {error}",
                op="encode documents",
            ) from error
        if len(line) > MAX_RECORD_BYTES:
            raise InvalidArgument(
                f"document record {position} is {len(line)} bytes, over {MAX_RECORD_BYTES}",
                op="encode documents",
            )
        parts.append(compressor.compress(line + b"\n"))
    parts.append(compressor.flush())
    return b"".join(parts)


def _corrupt(message: str) -> BundleCorrupt:
    return BundleCorrupt(
        f"documents section: {message}",
        op="decode documents",
        hint="the bundle's documents are damaged: export it again",
    )


def _record(line: bytes, position: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise _corrupt(f"record {position} is not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise _corrupt(f"record {position} is not a JSON object")
    return record


def decode_documents(data: bytes | memoryview) -> Iterator[dict[str, Any]]:
    """Yield the records of a documents section one by one, in the order they were stored.

    Raises ``BundleCorrupt`` for a wrong magic, a damaged or truncated stream, trailing bytes,
    a record that is not a JSON object, or a record over ``MAX_RECORD_BYTES``.
    """
    view = memoryview(data).cast("B")
    if bytes(view[: len(DOCUMENTS_MAGIC)]) != DOCUMENTS_MAGIC:
        raise _corrupt("wrong magic bytes")
    decompressor = zlib.decompressobj()
    pending = b""
    position = 0
    offset = len(DOCUMENTS_MAGIC)
    while not decompressor.eof:
        if decompressor.unconsumed_tail:
            source = decompressor.unconsumed_tail
        else:
            source = bytes(view[offset : offset + _READ_CHUNK_BYTES])
            offset += len(source)
        try:
            output = decompressor.decompress(source, _READ_CHUNK_BYTES)
        except zlib.error as error:
            raise _corrupt(f"compressed stream is damaged ({error})") from error
        if not source and not output:
            break  # input exhausted before the stream's end
        *lines, pending = (pending + output).split(b"\n")
        for line in lines:
            yield _record(line, position)
            position += 1
        if len(pending) > MAX_RECORD_BYTES:
            raise _corrupt(f"record {position} is longer than {MAX_RECORD_BYTES} bytes")
    if not decompressor.eof:
        raise _corrupt("compressed stream is cut short")
    if decompressor.unused_data or offset < view.nbytes:
        raise _corrupt("bytes follow the end of the compressed stream")
    if pending:
        raise _corrupt(f"record {position} is not terminated")
