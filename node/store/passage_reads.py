"""A search's reads of one collection's passages: which live documents hold a candidate, and
the texts it recomputes, from one snapshot.

A search checks every candidate it considers (are its documents live, do they match the
filter) and then reads the texts of those it recomputes. Both come from one read
transaction, so a text never disappears between the check and the read (a document deleted
meanwhile failed the search with ``NotFound``), and each label's holders are looked up and
each document's text decoded once for the whole search, where the check and the read each
did it again in a transaction of their own (``bench/bench_store.py``'s read path).
"""

from __future__ import annotations

from collections.abc import Sequence

import lmdb
from meshdex.index.chunking import normalize_newlines
from meshdex.index.errors import NotFound
from meshdex.node.records import DocumentInfo
from meshdex.node.store.blocks import BlockCache
from meshdex.node.store.documents import Documents, LiveDocument, Span


class PassageReader:
    """The passages of one collection in one read snapshot, each label's holders and each
    document's text read once: for one read operation (a search), never across writes."""

    def __init__(
        self, documents: Documents, txn: lmdb.Transaction, prefix: bytes, *, collection: str
    ) -> None:
        self._documents, self._txn, self._prefix = documents, txn, prefix
        self._collection = collection
        self._cache = BlockCache()
        self._holders: dict[int, list[tuple[str, int]]] = {}
        self._documents_read: dict[str, LiveDocument | None] = {}
        self._passages: dict[str, tuple[tuple[Span, ...], str] | None] = {}

    def holders(self, label: int) -> list[DocumentInfo]:
        """The live documents holding the passage with this label, sorted by id."""
        found = (self._live(doc_id) for doc_id, _ in self._holders_of(label))
        return [live.info for live in found if live is not None]

    def text(self, label: int) -> str | None:
        """The passage's text, from its first holder (by id); None if no live one holds it."""
        holders = self._holders_of(label)
        return self.passage(*holders[0]) if holders else None

    def texts(self, labels: Sequence[int]) -> list[str]:
        """The passages' texts, in order; ``NotFound`` names labels with no live passage."""
        out, missing = [], []
        for label in labels:
            text = self.text(label)
            if text is None:
                missing.append(label)
            out.append(text or "")
        if missing:
            raise NotFound(
                f"{len(missing)} passage label(s) not in the store of collection "
                f"{self._collection!r} (first: {missing[0]})",
                hint="the index is older than the store; rebuild it",
            )
        return out

    def passage(self, doc_id: str, number: int) -> str | None:
        """Passage ``number`` of a live document, or None if there is no such passage."""
        if doc_id not in self._passages:
            self._passages[doc_id] = self._decoded(doc_id)
        found = self._passages[doc_id]
        if found is None or number >= len(found[0]):
            return None
        start, end = found[0][number]
        return found[1][start:end]

    def _holders_of(self, label: int) -> list[tuple[str, int]]:
        if label not in self._holders:
            self._holders[label] = self._documents.passages.holders(self._txn, self._prefix,
                                                                    label)
        return self._holders[label]

    def _live(self, doc_id: str) -> LiveDocument | None:
        """The live document up to its text; its spans are decoded only if a passage of it
        is read (a whole file's record holds hundreds)."""
        if doc_id not in self._documents_read:
            self._documents_read[doc_id] = self._documents.live(self._txn, self._prefix, doc_id)
        return self._documents_read[doc_id]

    def _decoded(self, doc_id: str) -> tuple[tuple[Span, ...], str] | None:
        """A live document's spans and normalised text; None if it is deleted or absent."""
        found = self._live(doc_id)
        if found is None:
            return None
        ref, spans = found.text_and_spans()
        text = self._documents.blocks.text(self._txn, self._prefix, ref, self._cache)
        return spans, normalize_newlines(text)
