"""The passage index and label map: which documents of a collection hold a passage, by label.

``passages``  collection u32 + label u64 + varint seq of the holding document's record
              -> varint passage number in the document

A passage's text is never stored again: its number picks a span of the document's text
(``meshdex.node.store.documents``), and its key is the SHA-256 of that text. The label (the
key's first 8 bytes, what the index stores per node) leads the key, so one prefix scan finds
every document holding a passage and a collection's passages come out sorted by key.

The document is named by the seq of its record, not by its id: a live document has exactly one
change-log entry, at that seq (``changes``: seq -> collection + id), so the entry resolves it.
Ids are often paths of a few dozen bytes, repeated for every passage of the document; a seq
takes 2-4. A write that gives a document a new seq moves its references (``move``).
"""

from __future__ import annotations

from typing import Any

import lmdb
from meshdex.node.store.codec import U64, RecordReader, corrupt, put_varint
from meshdex.node.store.collections import CollectionStats
from meshdex.node.store.env import delete_prefix, first_with_prefix, scan_prefix


def reference_key(prefix: bytes, label: int, seq: int) -> bytes:
    """The key of the reference from passage ``label`` to the document whose record has
    ``seq``."""
    key = bytearray(prefix + U64.pack(label))
    put_varint(key, seq)
    return bytes(key)


class PassageIndex:
    def __init__(self, passages_db: Any, changes_db: Any) -> None:
        self._db, self._changes = passages_db, changes_db

    def link(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        seq: int,
        labels: list[int],
    ) -> None:
        """Record that the document at ``seq`` holds these passages (in document order;
        repeats once)."""
        for label, number in _first_numbers(labels).items():
            if first_with_prefix(txn, self._db, prefix + U64.pack(label)) is None:
                stats.passages += 1
            self._put(txn, prefix, label, seq, number)

    def unlink(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        seq: int,
        labels: list[int],
    ) -> None:
        for label in dict.fromkeys(labels):
            txn.delete(reference_key(prefix, label, seq), db=self._db)
            if first_with_prefix(txn, self._db, prefix + U64.pack(label)) is None:
                stats.passages -= 1

    def move(
        self, txn: lmdb.Transaction, prefix: bytes, labels: list[int], old_seq: int, new_seq: int
    ) -> None:
        """Point the references of a document whose text is unchanged at its new seq."""
        for label, number in _first_numbers(labels).items():
            txn.delete(reference_key(prefix, label, old_seq), db=self._db)
            self._put(txn, prefix, label, new_seq, number)

    def holders(self, txn: lmdb.Transaction, prefix: bytes, label: int) -> list[tuple[str, int]]:
        """(document id, passage number) of every document holding the label, sorted by id
        (bytewise UTF-8), so every device names the same first holder."""
        label_prefix = prefix + U64.pack(label)
        out = []
        for suffix, value in scan_prefix(txn, self._db, label_prefix):
            key = label_prefix + suffix
            seq = RecordReader(suffix, what="passage reference", key=key).varint()
            number = RecordReader(value, what="passage reference", key=key).varint()
            out.append((self._document_at(txn, prefix, seq, key), number))
        return sorted(out, key=lambda holder: holder[0].encode())

    def documents(self, txn: lmdb.Transaction, prefix: bytes, label: int) -> list[str]:
        """Ids of the documents holding the label, sorted (bytewise UTF-8)."""
        return [doc_id for doc_id, _ in self.holders(txn, prefix, label)]

    def drop_collection(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        delete_prefix(txn, self._db, prefix)

    def _put(self, txn: lmdb.Transaction, prefix: bytes, label: int, seq: int,
             number: int) -> None:
        value = bytearray()
        put_varint(value, number)
        txn.put(reference_key(prefix, label, seq), bytes(value), db=self._db)

    def _document_at(self, txn: lmdb.Transaction, prefix: bytes, seq: int, key: bytes) -> str:
        entry = txn.get(U64.pack(seq), db=self._changes)
        if entry is None or bytes(entry[:4]) != prefix:
            raise corrupt("passage reference", key,
                          f"the change-log entry {seq} of its document is missing")
        try:
            return bytes(entry[4:]).decode()
        except UnicodeDecodeError as error:
            raise corrupt("change-log entry", U64.pack(seq), error) from error


def _first_numbers(labels: list[int]) -> dict[int, int]:
    """Each label's first passage number in the document."""
    numbers: dict[int, int] = {}
    for number, label in enumerate(labels):
        numbers.setdefault(label, number)
    return numbers
