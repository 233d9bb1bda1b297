"""Metadata filters: parse a filter spec once, then test documents against it.

A field names a key of the document's metadata; ``id`` and ``source`` (``RESERVED_FIELDS``)
name the document's own id and source (where it was read from) unless its metadata has a key
by that name, so ``source~handbook`` finds what was read from a handbook file.

Two spellings of the same thing:

- JSON: ``{"and": [{"field": "lang", "op": "eq", "value": "en"}, {"or": [...]}]}`` with ops
  ``eq ne lt lte gt gte in contains``;
- the CLI shorthand: ``year>=2020``, ``lang=en``, ``lang!=de``, ``tags~python`` (contains),
  ``kind in [a,b]``, combined with `` and `` / `` or `` (``and`` binds tighter). The words
  ``and``, ``or`` and ``in`` are read in any case, as in SQL (``lang=en AND year>=2024``).
  Unquoted values are numbers or ``true``/``false`` when they read as one, else text; a
  quoted value (``title="rock and roll"``, ``kind in ["a,b", c]``) is text as written, and is
  how a value holds a connective word, an operator character or nothing (``note=""``).

A missing field matches nothing except ``ne``; values of incomparable types (a string against
a number) do not match rather than fail. The ordering ops (``< <= > >=`` / ``lt lte gt gte``)
take a number or an ISO 8601 date or time, compared as text as the readers write it
(``date>=2024-05-01``; a bare ``2024`` is a number, so write ``date>="2024"`` for a year).

Bad specs raise ``InvalidArgument`` naming the clause and what is wrong with it rather than
becoming a filter that quietly matches nothing: a dangling or doubled connective, a clause
without a field, operator or value, an unknown operator (``==``, ``=>``), an unquoted value
holding an operator (a missing ``and``), an unclosed quote or bracket, an empty ``in`` list,
an ordering op against text.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
ORDERING_OPS = frozenset({"lt", "lte", "gt", "gte"})
SHORTHAND_HINT = ("write e.g. year>=2020, lang=en, tags~python or kind in [a,b], joined with "
                  "' and ' / ' or '; quote a value that holds and, or or an operator")
JSON_HINT = ('write e.g. {"and": [{"field": "lang", "op": "eq", "value": "en"}, {"field": '
             '"year", "op": "gte", "value": 2020}]} ("or" likewise; op one of '
             + " ".join(OPS) + "), or the shorthand lang=en and year>=2020")
_SPACE = re.compile(r"\s*")
_FIELD = re.compile(r"[A-Za-z_][\w.-]*")
_OPERATOR = re.compile(r"[=<>!~]+")
_CONNECTIVE = re.compile(r"(?:and|or)(?=\s|$)", re.IGNORECASE)
_NEXT_CONNECTIVE = re.compile(r"\s(?:and|or)(?=\s|$)", re.IGNORECASE)
_IN_KEYWORD = re.compile(r"\s+in(?=\s|\[)", re.IGNORECASE)
_LIST_OPEN, _LIST_CLOSE, _LIST_COMMA = re.compile(r"\["), re.compile(r"\]"), re.compile(",")
# A quote opens a value only where the value starts, so ``title~don't`` stays plain text.
_QUOTED = re.compile(r"""\s*(["'])((?:(?!\1).)*)(\1?)""", re.DOTALL)
# One \s in the lookahead, not \s+: that rescanned a run of spaces at each of its characters.
_VALUE_UNQUOTED = re.compile(r"(?:(?!\s(?:and|or)(?:\s|$)).)*", re.IGNORECASE | re.DOTALL)
_ITEM_UNQUOTED = re.compile(r"[^,\]]*")
# What iso_utc and the readers write (2024-05-01, 2024-05-01T10:00:00Z), or a prefix of it.
_ISO_DATE = re.compile(
    r"\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?"
)


RESERVED_FIELDS = ("id", "source")
KNOWN_FIELDS_LISTED = 30  # fields named in the hint for a field no document has


class Filterable(Protocol):
    """What a filter reads of a document (``Document`` and ``DocumentInfo`` both are)."""

    @property
    def id(self) -> str: ...

    @property
    def source(self) -> str | None: ...

    @property
    def metadata(self) -> Mapping[str, Any]: ...


class _Fields(Mapping[str, Any]):
    """A document's metadata, with its id and source under ``RESERVED_FIELDS`` unless the
    metadata holds those keys itself; read per candidate, so nothing is copied."""

    def __init__(self, document: Filterable) -> None:
        self._metadata = document.metadata
        self._own = {"id": document.id, "source": document.source}

    def __getitem__(self, field: str) -> Any:
        if field in self._metadata:
            return self._metadata[field]
        if self._own.get(field) is None:
            raise KeyError(field)
        return self._own[field]

    def __iter__(self) -> Iterator[str]:
        yield from self._metadata
        yield from (name for name, value in self._own.items()
                    if value is not None and name not in self._metadata)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Filter:
    """A parsed filter; ``accepts(document)`` says whether a document passes,
    ``matches(fields)`` whether a mapping of its fields does."""

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def fields(self) -> frozenset[str]:
        """Every field the filter names."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def accepts(self, document: Filterable) -> bool:
        return self.matches(_Fields(document))


def check_fields_known(condition: Filter, metadata_fields: Iterable[str], *,
                       collection: str) -> None:
    """``InvalidArgument`` when the filter names a field that no document of ``collection``
    has (``metadata_fields``: every metadata key there; the reserved fields are always known),
    listing the fields it could name. Meant for a filter that matched nothing, whose empty
    answer would otherwise hide a mistyped field."""
    known = sorted({*metadata_fields, *RESERVED_FIELDS})
    unknown = sorted(condition.fields().difference(known))
    if not unknown:
        return
    names = ", ".join(quoted(field) for field in unknown)
    listed = ", ".join(known[:KNOWN_FIELDS_LISTED])
    more = len(known) - KNOWN_FIELDS_LISTED
    raise InvalidArgument(
        f"the filter names {'a field' if len(unknown) == 1 else 'fields'} {names} that no "
        f"document of collection {quoted(collection)} has",
        hint=f"its documents' fields are {listed}" + (f" and {more} more" if more > 0 else ""))


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

    def fields(self) -> frozenset[str]:
        return frozenset({self.field})

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"field": self.field, "op": self.op, "value": value}


@dataclass(frozen=True, kw_only=True)
class _Connective(Filter):
    parts: tuple[Filter, ...]

    def fields(self) -> frozenset[str]:
        return frozenset().union(*(part.fields() for part in self.parts))


@dataclass(frozen=True, kw_only=True)
class AllOf(_Connective):
    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return all(part.matches(metadata) for part in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"and": [part.to_json() for part in self.parts]}


@dataclass(frozen=True, kw_only=True)
class AnyOf(_Connective):
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
        try:
            node = loads_json(text, what="filter")
        except InvalidArgument as error:
            raise _bad_json(error.message) from None
        return _from_json(node, "filter")
    return _from_shorthand(text)


def _from_json(node: Any, where: str) -> Filter:
    if not isinstance(node, Mapping):
        raise _bad_json(f"{where}: expected an object, got {type(node).__name__}")
    for connective, cls in (("and", AllOf), ("or", AnyOf)):
        if connective in node:
            if set(node) != {connective}:
                raise _bad_json(f"{where}: '{connective}' cannot be mixed with other keys")
            parts = node[connective]
            if not isinstance(parts, list) or not parts:
                raise _bad_json(f"{where}.{connective}: expected a non-empty list")
            return cls(parts=tuple(
                _from_json(part, f"{where}.{connective}[{i}]") for i, part in enumerate(parts)
            ))
    if set(node) != {"field", "op", "value"}:
        raise _bad_json(
            f"{where}: a condition needs exactly 'field', 'op' and 'value', got {sorted(node)}"
        )
    return _condition(node["field"], node["op"], node["value"], where)


def _condition(field: Any, op: Any, value: Any, where: str) -> Condition:
    if not isinstance(field, str) or not field:
        raise _bad_json(f"{where}: 'field' must be a non-empty string")
    if op not in OPS:
        raise _bad_json(f"{where}: unknown op {quoted(op)}; use one of {', '.join(OPS)}")
    if op == "in":
        if not isinstance(value, list | tuple) or not all(_is_scalar(v) for v in value):
            raise _bad_json(f"{where}: 'in' needs a list of plain values")
        value = tuple(value)
    elif not _is_scalar(value):
        raise _bad_json(f"{where}: op {quoted(op)} needs a string, number or boolean value")
    elif op in ORDERING_OPS:
        _check_ordering_value(value, where)
    return Condition(field=field, op=op, value=value)


def _bad_json(message: str) -> InvalidArgument:
    return InvalidArgument(message, hint=JSON_HINT)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, Scalar)


def _check_ordering_value(value: Any, where: str) -> None:
    """Ordering compares numbers, or ISO 8601 dates as text (they sort as they read); any other
    value would quietly match nothing, since a text field compared with ``>`` is rarely meant."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return
    raise InvalidArgument(
        f"{where}: an ordering comparison takes a number or an ISO 8601 date (2024-05-01), "
        f"not {quoted(value)}",
        hint="match text with = or ~ (contains)",
    )


@dataclass
class _Scanner:
    """A position in the shorthand text, advanced by matching patterns at it."""

    text: str
    pos: int = 0

    def take(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The match at the position, which moves past it; ``None`` and no move otherwise."""
        match = pattern.match(self.text, self.pos)
        if match:
            self.pos = match.end()
        return match

    def peek(self, pattern: re.Pattern[str]) -> bool:
        return pattern.match(self.text, self.pos) is not None

    def skip_space(self) -> None:
        self.take(_SPACE)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def rest(self) -> str:
        return self.text[self.pos:]

    def clause_from(self, start: int) -> str:
        """The text of the clause starting at ``start``, up to the next connective."""
        following = _NEXT_CONNECTIVE.search(self.text, max(start, self.pos))
        return self.text[start:following.start() if following else len(self.text)].strip()


def _from_shorthand(text: str) -> Filter:
    scanner = _Scanner(text)
    groups: list[list[Filter]] = [[]]
    connective: str | None = None
    while True:
        groups[-1].append(_shorthand_clause(scanner, after=connective))
        scanner.skip_space()
        if scanner.at_end():
            break
        word = scanner.take(_CONNECTIVE)
        if not word:
            raise _unparsable("filter", f"expected 'and' or 'or' before {quoted(scanner.rest())}")
        connective = word.group(0).lower()
        if connective == "or":
            groups.append([])
    ands = [group[0] if len(group) == 1 else AllOf(parts=tuple(group)) for group in groups]
    return ands[0] if len(ands) == 1 else AnyOf(parts=tuple(ands))


def _shorthand_clause(scanner: _Scanner, *, after: str | None) -> Condition:
    scanner.skip_space()
    if scanner.at_end() or scanner.peek(_CONNECTIVE):
        raise _empty_clause(scanner, after)
    start = scanner.pos
    field = scanner.take(_FIELD)
    if not field:
        raise _unparsable(f"filter clause {quoted(scanner.clause_from(start))}",
                          "expected a field name first")
    if scanner.take(_IN_KEYWORD):
        options = _shorthand_list(scanner, start)
        written = f"filter clause {quoted(scanner.text[start:scanner.pos].strip())}"
        return _condition(field.group(0), "in", options, written)
    scanner.skip_space()
    symbol = scanner.take(_OPERATOR)
    where = f"filter clause {quoted(scanner.clause_from(start))}"
    if not symbol:
        raise _unparsable(where, "no operator after the field name")
    if symbol.group(0) not in SHORTHAND_OPS:
        raise _unparsable(where, f"unknown operator {quoted(symbol.group(0))}",
                          hint=f"the operators are {' '.join(SHORTHAND_OPS)} and 'in [a,b]'; "
                          "quote a value that starts with one of them")
    value = _shorthand_value(scanner, where, stop=_VALUE_UNQUOTED)
    if value is None:
        raise _unparsable(where, f"no value after {quoted(symbol.group(0))}",
                          hint=f'to match an empty text write {field.group(0)}=""')
    written = f"filter clause {quoted(scanner.text[start:scanner.pos].strip())}"
    return _condition(field.group(0), SHORTHAND_OPS[symbol.group(0)], value, written)


def _shorthand_list(scanner: _Scanner, start: int) -> list[Scalar]:
    """The values of ``field in [a, "b, c", 3]``; blank items are passed over."""
    where = f"filter clause {quoted(scanner.clause_from(start))}"
    scanner.skip_space()
    if not scanner.take(_LIST_OPEN):
        raise _unparsable(where, "'in' needs its values in brackets, e.g. kind in [a,b]")
    options: list[Scalar] = []
    while True:
        scanner.skip_space()
        value = _shorthand_value(scanner, where, stop=_ITEM_UNQUOTED)
        if value is not None:
            options.append(value)
        scanner.skip_space()
        if scanner.take(_LIST_CLOSE):
            break
        if not scanner.take(_LIST_COMMA):
            raise _unparsable(where, "expected ',' or ']' in the list")
    if not options:
        raise _unparsable(where, "'in' needs at least one value")
    return options


def _shorthand_value(scanner: _Scanner, where: str, *, stop: re.Pattern[str]) -> Scalar | None:
    """A quoted value is text as written; an unquoted one is a number or true/false when it
    reads as one, else text, and may not contain an operator (a missing 'and' is likelier).
    ``None`` when there is no value at all."""
    if quote := scanner.take(_QUOTED):
        if not quote.group(3):
            raise _unparsable(where, f"unclosed quote {quote.group(1)}")
        return quote.group(2)
    raw = scanner.take(stop).group(0).strip()  # type: ignore[union-attr]  # matches ""
    if not raw:
        return None
    if operator_inside := _OPERATOR.search(raw):
        raise _unparsable(where, f"its unquoted value holds {quoted(operator_inside.group(0))}",
                          hint="quote a value that holds = < > ! or ~, "
                          "and join conditions with ' and ' / ' or '")
    if raw in ("true", "false"):
        return raw == "true"
    number = _number(raw)
    return raw if number is None else number


def _number(raw: str) -> int | float | None:
    """``raw`` as an int or a finite float; ``None`` for anything else ("nan" stays text)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _empty_clause(scanner: _Scanner, after: str | None) -> InvalidArgument:
    spec = f"filter {quoted(scanner.text)}"
    if after is None:
        word = scanner.rest().split()[0].lower()
        return _unparsable(spec, f"it starts with {quoted(word)}: a condition must come first")
    if scanner.at_end():
        return _unparsable(spec, f"it ends with {quoted(after)}: a condition must follow it")
    word = scanner.rest().split()[0].lower()
    return _unparsable(spec, f"nothing between {quoted(after)} and {quoted(word)}")


def _unparsable(where: str, reason: str, *, hint: str = SHORTHAND_HINT) -> InvalidArgument:
    return InvalidArgument(f"cannot parse {where}: {reason}", hint=hint)
