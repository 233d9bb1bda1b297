"""Checks on everything a caller hands the node, run before the store sees it.

Each check raises ``InvalidArgument`` with a message naming the offending item, so the CLI and
the gRPC server can report it per item and keep going with the rest.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

from meshdex.index.errors import InvalidArgument
from meshdex.index.json_limits import check_depth, quoted
from meshdex.node.records import DocumentInput

MAX_COLLECTION_NAME_CHARS = 128
MAX_DOCUMENT_ID_BYTES = 512
MAX_METADATA_BYTES = 64 * 1024
MAX_DOCUMENT_TEXT_BYTES = 16 * 1024 * 1024
MAX_SOURCE_BYTES = 4096
MAX_TOP_K = 1000
MAX_QUERY_CHARS = 8192

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_collection_name(name: Any) -> str:
    """A collection name: letters, digits, ``_ . -``, starting with a letter or digit."""
    if (
        not isinstance(name, str)
        or len(name) > MAX_COLLECTION_NAME_CHARS
        or not _COLLECTION_NAME.fullmatch(name)
    ):
        raise InvalidArgument(
            f"invalid collection name {quoted(name)}: use 1-{MAX_COLLECTION_NAME_CHARS} letters, "
            "digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def check_document_id(doc_id: Any) -> str:
    """A document id: non-blank text of at most 512 UTF-8 bytes without control characters."""
    if not isinstance(doc_id, str):
        raise InvalidArgument(f"document id must be a string, got {type(doc_id).__name__}")
    if not doc_id.strip():
        raise InvalidArgument("document id must not be empty")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in doc_id):
        raise InvalidArgument(f"document id {quoted(doc_id)} contains control characters")
    size = len(doc_id.encode("utf-8"))
    if size > MAX_DOCUMENT_ID_BYTES:
        raise InvalidArgument(
            f"document id {doc_id[:40]!r}... is {size} bytes; the limit is {MAX_DOCUMENT_ID_BYTES}"
        )
    return doc_id


def check_metadata(metadata: Any, *, doc_id: str) -> dict[str, Any]:
    """Metadata: a JSON object with string keys and finite numbers, at most 64 KiB as JSON."""
    if not isinstance(metadata, dict):
        raise InvalidArgument(
            f"document {doc_id!r}: metadata must be a JSON object, got {_json_type(metadata)}"
        )
    check_depth(metadata, what=f"document {doc_id!r}: metadata")
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"document {doc_id!r}: metadata is not plain JSON: {error}"
        ) from error
    _check_keys(metadata, doc_id)
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            f"document {doc_id!r}: metadata is {len(encoded)} bytes as JSON; "
            f"the limit is {MAX_METADATA_BYTES}"
        )
    return metadata


def _check_keys(value: Any, doc_id: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"document {doc_id!r}: metadata key {key!r} is not a string")
            _check_keys(item, doc_id)
    elif isinstance(value, list):
        for item in value:
            _check_keys(item, doc_id)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"document {doc_id!r}: metadata holds a non-finite number")


def check_text(text: Any, *, doc_id: str) -> str:
    """Document text: non-blank, valid Unicode, at most 16 MiB as UTF-8."""
    if not isinstance(text, str):
        raise InvalidArgument(f"document {doc_id!r}: text must be a string, got {_json_type(text)}")
    if not text.strip():
        raise InvalidArgument(f"document {doc_id!r}: text is empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidArgument(f"document {doc_id!r}: text is not valid Unicode: {error}") from error
    if size > MAX_DOCUMENT_TEXT_BYTES:
        raise InvalidArgument(
            f"document {doc_id!r}: text is {size} bytes; the limit is {MAX_DOCUMENT_TEXT_BYTES}"
        )
    return text


def check_limit(limit: Any) -> int | None:
    """A listing's limit: None (no limit) or a positive whole number."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise InvalidArgument(f"limit must be a positive whole number, got {quoted(limit)}")
    return limit


def check_search(query: Any, top_k: Any) -> None:
    """A search's query (non-blank Unicode text, at most ``MAX_QUERY_CHARS``) and ``top_k``
    (in [1, ``MAX_TOP_K``]). Checked by the client too, before a request is built: the wire's
    ``top_k`` is unsigned with 0 meaning the default, so -3 failed inside protobuf with a
    traceback and 0 answered five hits where the embedded search refuses it."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("query must be non-empty text")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidArgument(f"query is not valid Unicode text ({error.reason} at character "
                              f"{error.start}): a byte of another encoding, e.g. Latin-1?",
                              hint="pass the query as UTF-8") from None
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidArgument(f"top_k must be an integer in [1, {MAX_TOP_K}], got {top_k!r}")


def check_document(doc: DocumentInput) -> DocumentInput:
    """All checks for one document; returns it unchanged when valid."""
    check_document_id(doc.id)
    check_text(doc.text, doc_id=doc.id)
    check_metadata(doc.metadata, doc_id=doc.id)
    if doc.source is not None and (
        not isinstance(doc.source, str)
        or len(doc.source.encode("utf-8", "replace")) > MAX_SOURCE_BYTES
    ):
        raise InvalidArgument(
            f"document {doc.id!r}: source must be text of at most {MAX_SOURCE_BYTES} bytes"
        )
    return doc


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for python_type, name in names.items():
        if isinstance(value, python_type):
            return name
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__
