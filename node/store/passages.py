"""The passage index and label map: which documents of a collection hold a passage, by label.

``passages``  collection u32 + label u64 + document id -> varint passage number in the document

A passage's text is never stored again: its number picks a span of the document's text
(``meshdex.node.store.documents``), and its key is the SHA-256 of that text. The label (the
key's first 8 bytes, what the index stores per node) leads the key, so one prefix scan finds
every document holding a passage and a collection's passages come out sorted by key.
"""

from __future__ import annotations

from typing import Any

import lmdb
from meshdex.node.store.codec import U64, RecordReader, put_varint
from meshdex.node.store.collections import CollectionStats
from meshdex.node.store.env import delete_prefix, first_with_prefix, scan_prefix


class PassageIndex:
    def __init__(self, passages_db: Any) -> None:
        self._db = passages_db

    def link(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        doc_id: str,
        labels: list[int],
    ) -> None:
        """Record that ``doc_id`` holds these passages (in document order; repeats once)."""
        suffix = doc_id.encode()
        seen: set[int] = set()
        for number, label in enumerate(labels):
            if label in seen:
                continue
            seen.add(label)
            label_prefix = prefix + U64.pack(label)
            if first_with_prefix(txn, self._db, label_prefix) is None:
                stats.passages += 1
            value = bytearray()
            put_varint(value, number)
            txn.put(label_prefix + suffix, bytes(value), db=self._db)

    def unlink(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        stats: CollectionStats,
        doc_id: str,
        labels: list[int],
    ) -> None:
        suffix = doc_id.encode()
        for label in dict.fromkeys(labels):
            label_prefix = prefix + U64.pack(label)
            txn.delete(label_prefix + suffix, db=self._db)
            if first_with_prefix(txn, self._db, label_prefix) is None:
                stats.passages -= 1

    def locate(self, txn: lmdb.Transaction, prefix: bytes, label: int) -> tuple[str, int] | None:
        """(document id, passage number) of the first document holding the label, or None."""
        label_prefix = prefix + U64.pack(label)
        found = first_with_prefix(txn, self._db, label_prefix)
        if found is None:
            return None
        doc_id, value = found
        reader = RecordReader(value, what="passage reference", key=label_prefix + doc_id)
        return doc_id.decode(), reader.varint()

    def documents(self, txn: lmdb.Transaction, prefix: bytes, label: int) -> list[str]:
        """Ids of the documents holding the label, sorted (bytewise UTF-8)."""
        return [
            doc_id.decode() for doc_id, _ in scan_prefix(txn, self._db, prefix + U64.pack(label))
        ]

    def drop_collection(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        delete_prefix(txn, self._db, prefix)
