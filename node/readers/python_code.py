"""Python source split at top-level function and class boundaries (stdlib ``ast``).

Each top-level function or class (with its decorators) is one document, ``path#name``, with
``symbol``, ``kind`` (function / class), ``line_start`` / ``line_end`` and, for a class, its
``methods`` in metadata — so ``--filter "symbol=parse_args"`` finds one function and a hit
names where it is. What is left at module level (docstring, imports, constants, scripts) is
one document under the file's own id. Other languages stay one document per file, cut at
blank-line blocks by the chunker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshdex.node.ingest import SKIPPED_TOO_LARGE, FileTask, IngestItem
from meshdex.node.readers._common import SourceTooLarge, os_error_reason, read_bounded
from meshdex.node.records import DocumentInput

PYTHON_SUFFIXES = frozenset({".py", ".pyi"})
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True, kw_only=True)
class _Symbol:
    name: str
    kind: str
    first_line: int  # 1-based, inclusive; the first decorator's line
    last_line: int
    methods: list[str]


class PythonCodeReader:
    """Functions and classes of a Python file, one document each."""

    kind = "code"
    sub_document_separator = "#"
    keeps_dropped = False

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() in PYTHON_SUFFIXES

    def read(self, task: FileTask) -> Iterator[IngestItem]:
        origin = str(task.path)
        try:
            source = read_bounded(task.path).decode("utf-8-sig")
        except SourceTooLarge:
            yield IngestItem(origin=origin, skipped=SKIPPED_TOO_LARGE)
            return
        except OSError as error:
            yield IngestItem(origin=origin, error=os_error_reason(error))
            return
        except UnicodeDecodeError as error:
            yield IngestItem(origin=origin, error=f"not valid UTF-8 (offset {error.start})")
            return
        try:
            tree = ast.parse(source, filename=origin)
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None)
            where = f"{origin}:{line}" if line else origin
            message = getattr(error, "msg", None) or str(error)
            yield IngestItem(origin=where, error=f"not valid Python: {message}")
            return
        lines = source.splitlines(keepends=True)
        symbols = [_symbol(node) for node in tree.body if isinstance(node, _DEFINITIONS)]
        base: dict[str, Any] = {"path": task.relative, "type": "code", "language": "python"}
        covered: set[int] = set()
        used_ids: set[str] = set()
        for symbol in symbols:
            covered.update(range(symbol.first_line, symbol.last_line + 1))
            doc_id = f"{task.doc_id}#{symbol.name}"
            if doc_id in used_ids:  # a name defined twice at top level
                doc_id = f"{doc_id}@{symbol.first_line}"
            used_ids.add(doc_id)
            metadata = {**base, "symbol": symbol.name, "kind": symbol.kind,
                        "line_start": symbol.first_line, "line_end": symbol.last_line}
            if symbol.methods:
                metadata["methods"] = symbol.methods
            text = "".join(lines[symbol.first_line - 1 : symbol.last_line])
            yield IngestItem(origin=f"{origin}:{symbol.first_line}", doc=DocumentInput(
                id=doc_id, text=text, metadata=metadata, source=origin))
        rest = "".join(line for number, line in enumerate(lines, start=1)
                       if number not in covered)
        if rest.strip():
            metadata = {**base, "kind": "module"}
            yield IngestItem(origin=origin, doc=DocumentInput(
                id=task.doc_id, text=rest, metadata=metadata, source=origin))
        elif not symbols:
            yield IngestItem(origin=origin, skipped="empty")


def _symbol(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> _Symbol:
    first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
    methods = [child.name for child in node.body
               if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)]
    kind = "class" if isinstance(node, ast.ClassDef) else "function"
    return _Symbol(name=node.name, kind=kind, first_line=first,
                   last_line=node.end_lineno or node.lineno,
                   methods=methods if kind == "class" else [])
