"""Metadata filters: parse a filter spec once, then test documents' metadata against it.

Two spellings of the same thing:

- JSON: ``{"and": [{"field": "lang", "op": "eq", "value": "en"}, {"or": [...]}]}`` with ops
  ``eq ne lt lte gt gte in contains``;
- the CLI shorthand: ``year>=2020``, ``lang=en``, ``lang!=de``, ``tags~python`` (contains),
  ``kind in [a,b]``, combined with `` and `` / `` or `` (``and`` binds tighter).

A missing field matches nothing except ``ne``; values of incomparable types (a string against
a number) do not match rather than fail. Bad specs raise ``InvalidArgument`` naming the problem.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshdex.index.errors import InvalidArgument
from meshdex.index.json_limits import check_depth, loads_json, quoted

Scalar = str | int | float | bool


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple | set | frozenset):
        return item in container
    return False


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda field_value, options: field_value in options,
    "contains": _contains,
}
SHORTHAND_OPS = {
    ">=": "gte", "<=": "lte", "!=": "ne", ">": "gt", "<": "lt", "=": "eq", "~": "contains",
}
_SHORTHAND = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|!=|>|<|=|~)\s*(.*?)\s*$")
_SHORTHAND_IN = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s+in\s+\[(.*)\]\s*$")
_CONNECTIVE = re.compile(r"\s+(and|or)\s+")


class Filter:
    """A parsed filter; ``matches(metadata)`` says whether a document's metadata passes."""

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Condition(Filter):
    field: str
    op: str
    value: Any

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        if self.field not in metadata:
            return self.op == "ne"
        try:
            return bool(OPS[self.op](metadata[self.field], self.value))
        except TypeError:
            return False

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "op": self.op, "value": value}


@dataclass(frozen=True, kw_only=True)
class AllOf(Filter):
    parts: tuple[Filter, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(part.matches(metadata) for part in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"and": [part.to_json() for part in self.parts]}


@dataclass(frozen=True, kw_only=True)
class AnyOf(Filter):
    parts: tuple[Filter, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return any(part.matches(metadata) for part in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"or": [part.to_json() for part in self.parts]}


def parse_filter(spec: str | Mapping[str, Any]) -> Filter:
    """A ``Filter`` from a JSON mapping, a JSON string, or the CLI shorthand."""
    if isinstance(spec, Mapping):
        return _from_json(check_depth(dict(spec), what="filter"), "filter")
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument("a filter must be a non-empty string or a JSON object")
    text = spec.strip()
    if text.startswith("{"):
        return _from_json(loads_json(text, what="filter"), "filter")
    return _from_shorthand(text)


def _from_json(node: Any, where: str) -> Filter:
    if not isinstance(node, Mapping):
        raise InvalidArgument(f"{where}: expected an object, got {type(node).__name__}")
    for connective, cls in (("and", AllOf), ("or", AnyOf)):
        if connective in node:
            if set(node) != {connective}:
                raise InvalidArgument(f"{where}: '{connective}' cannot be mixed with other keys")
            parts = node[connective]
            if not isinstance(parts, list) or not parts:
                raise InvalidArgument(f"{where}.{connective}: expected a non-empty list")
            return cls(parts=tuple(
                _from_json(part, f"{where}.{connective}[{i}]") for i, part in enumerate(parts)
            ))
    if set(node) != {"field", "op", "value"}:
        raise InvalidArgument(
            f"{where}: a condition needs exactly 'field', 'op' and 'value', got {sorted(node)}"
        )
    return _condition(node["field"], node["op"], node["value"], where)


def _condition(field: Any, op: Any, value: Any, where: str) -> Condition:
    if not isinstance(field, str) or not field:
        raise InvalidArgument(f"{where}: 'field' must be a non-empty string")
    if op not in OPS:
        raise InvalidArgument(f"{where}: unknown op {quoted(op)}; use one of {', '.join(OPS)}")
    if op == "in":
        if not isinstance(value, list | tuple) or not all(_is_scalar(v) for v in value):
            raise InvalidArgument(f"{where}: 'in' needs a list of plain values")
        value = tuple(value)
    elif not _is_scalar(value):
        raise InvalidArgument(f"{where}: op {quoted(op)} needs a string, number or boolean value")
    return Condition(field=field, op=op, value=value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, Scalar)


def _from_shorthand(text: str) -> Filter:
    pieces = _CONNECTIVE.split(text)
    terms, connectives = pieces[0::2], pieces[1::2]
    groups: list[list[Filter]] = [[_shorthand_term(terms[0])]]
    for connective, term in zip(connectives, terms[1:], strict=True):
        if connective == "or":
            groups.append([])
        groups[-1].append(_shorthand_term(term))
    ands = [group[0] if len(group) == 1 else AllOf(parts=tuple(group)) for group in groups]
    return ands[0] if len(ands) == 1 else AnyOf(parts=tuple(ands))


def _shorthand_term(term: str) -> Condition:
    where = f"filter term {quoted(term.strip())}"
    if match := _SHORTHAND_IN.match(term):
        options = [_shorthand_value(v) for v in match.group(2).split(",") if v.strip()]
        return _condition(match.group(1), "in", options, where)
    match = _SHORTHAND.match(term)
    if not match or not match.group(3) or match.group(3)[0] in "=<>!~":
        raise InvalidArgument(
            f"cannot parse {where}",
            hint="write e.g. year>=2020, lang=en, tags~python or kind in [a,b], "
            "joined with ' and ' / ' or '",
        )
    field, symbol, raw = match.groups()
    return _condition(field, SHORTHAND_OPS[symbol], _shorthand_value(raw), where)


def _shorthand_value(raw: str) -> Scalar:
    """Numbers and true/false become typed values; quotes keep a value a string."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw in ("true", "false"):
        return raw == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw
