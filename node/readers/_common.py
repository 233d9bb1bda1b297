"""Small helpers every reader shares: bounded reads, timestamps, stable sub-document ids."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from meshdex.node.ingest import MAX_FILE_BYTES

SUBDOCUMENT_HASH_CHARS = 16


class SourceTooLarge(Exception):
    """A source file is over ``MAX_FILE_BYTES``; readers report it as a skip."""


def read_bounded(path: Path) -> bytes:
    """The file's bytes; ``SourceTooLarge`` over ``MAX_FILE_BYTES``, ``OSError`` as raised."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SourceTooLarge(str(path))
    return path.read_bytes()


def iso_utc(epoch_s: float) -> str:
    """An epoch time as ISO 8601 UTC to the second: sortable and comparable in filters."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_hash(text: str) -> str:
    """A short stable name for something too long or too wild to be part of an id (a URL)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:SUBDOCUMENT_HASH_CHARS]


def os_error_reason(error: OSError) -> str:
    return f"cannot read: {error.strerror or error}"
