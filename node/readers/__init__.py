"""Readers for the sources beyond plain files: one module per kind, one shared interface.

Each reader implements ``meshdex.node.ingest.SourceReader``. ``READERS`` maps the kind a user
names with ``meshdex add --source KIND`` to its reader; every reader is also consulted while
walking folders, where it claims the files it knows by name or suffix (folder sources, a Slack
export or a Maildir, are only read when named). ``collect_sources`` is that walk: ``meshdex
add`` and ``meshdex watch`` both collect their inputs with it, so a file gets the same
documents, under the same ids, whichever of them reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meshdex.node.ingest import FileTask, IngestItem, SourceReader, collect_files
from meshdex.node.readers.browser import BrowserHistoryReader
from meshdex.node.readers.chatgpt import ChatGPTReader
from meshdex.node.readers.mail import MailReader
from meshdex.node.readers.pdf import PdfReader
from meshdex.node.readers.python_code import PythonCodeReader
from meshdex.node.readers.slack import SlackReader

__all__ = ["READERS", "collect_sources", "reader_named"]

READERS: dict[str, SourceReader] = {
    reader.kind: reader
    for reader in (
        BrowserHistoryReader(),
        ChatGPTReader(),
        MailReader(),
        PdfReader(),
        PythonCodeReader(),
        SlackReader(),
    )
}


def reader_named(kind: str) -> SourceReader:
    """The reader for ``kind``; ``InvalidArgument`` naming the known kinds otherwise."""
    from meshdex.index.errors import InvalidArgument

    try:
        return READERS[kind]
    except KeyError:
        raise InvalidArgument(
            f"unknown source kind {kind!r}; known: {', '.join(sorted(READERS))}"
        ) from None


def collect_sources(
    paths: Sequence[Path],
    *,
    id_prefix: str | None = None,
    follow_symlinks: bool = False,
    source_kind: str | None = None,
) -> tuple[list[FileTask], list[IngestItem]]:
    """``collect_files`` with every reader claiming its files, or with ``source_kind`` every
    path read as one source of that kind (``InvalidArgument`` for an unknown kind)."""
    source = reader_named(source_kind) if source_kind else None
    return collect_files(paths, id_prefix=id_prefix, follow_symlinks=follow_symlinks,
                         readers=list(READERS.values()), source=source)
