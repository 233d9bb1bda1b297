"""Limits on JSON that callers hand meshdex: nesting depth, and how much of it an error quotes.

Python's ``json`` recurses per nesting level, so metadata or a filter nested thousands deep
raised ``RecursionError``, lost the rest of a batch and left a traceback. Every parse of
untrusted JSON (JSONL lines, gRPC ``metadata_json``, JSON filters) goes through ``loads_json``;
values that arrive already parsed are checked with ``check_depth``, without recursion.
"""

from __future__ import annotations

import json
from typing import Any

from meshdex.index.errors import InvalidArgument

MAX_JSON_DEPTH = 32  # nesting levels of objects/arrays; real metadata needs a handful
MAX_QUOTED_CHARS = 200  # of offending input echoed back in an error message


def quoted(value: Any) -> str:
    """``repr`` of ``value``, cut to ``MAX_QUOTED_CHARS`` with how much was left out: an error
    about a 100 KB input must not be 100 KB itself."""
    text = repr(value)
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    return f"{text[:MAX_QUOTED_CHARS]}... ({len(text) - MAX_QUOTED_CHARS} more characters)"


def check_depth(value: Any, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``value`` unchanged, or ``InvalidArgument`` if it nests deeper than ``max_depth``."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth > max_depth:
            raise InvalidArgument(f"{what} nests deeper than {max_depth} levels")
        pending.extend((child, depth + 1) for child in children)
    return value


def loads_json(text: str | bytes, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON; ``InvalidArgument`` naming ``what`` if it is malformed or nests
    deeper than ``max_depth``."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidArgument(f"{what} nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as error:
        raise InvalidArgument(f"{what} is not valid JSON: {error.msg} at {error.pos}") from None
    except ValueError as error:  # e.g. invalid UTF-8 in bytes
        raise InvalidArgument(f"{what} is not valid JSON: {error}") from None
    return check_depth(value, what=what, max_depth=max_depth)
