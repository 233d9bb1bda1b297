"""Readers for the sources beyond plain files: one module per kind, one shared interface.

Each reader implements ``meshdex.node.ingest.SourceReader``. ``READERS`` maps the kind a user
names with ``meshdex add --source KIND`` to its reader; every reader is also consulted while
walking folders, where it claims the files it knows by name or suffix (folder sources, a Slack
export or a Maildir, are only read when named).
"""

from __future__ import annotations

from meshdex.node.ingest import SourceReader
from meshdex.node.readers.browser import BrowserHistoryReader
from meshdex.node.readers.chatgpt import ChatGPTReader
from meshdex.node.readers.mail import MailReader
from meshdex.node.readers.pdf import PdfReader
from meshdex.node.readers.python_code import PythonCodeReader
from meshdex.node.readers.slack import SlackReader

__all__ = ["READERS", "reader_named"]

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
