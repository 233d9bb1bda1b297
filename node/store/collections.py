"""Collections: their configuration (compact JSON, keyed by name), a fixed-width id that
prefixes every other key of the collection, and their counters.

``collections``       name -> JSON {id, embedder, chunking, created_ms, updated_ms}
``collection_names``  u32 id -> name (change-log entries carry the id)
``stats``             u32 id -> varints documents, passages, tombstones, next block, then the
                      newest stamp (``HLCTimestamp.pack``), empty when none
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

import lmdb
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.errors import CollectionExists, CollectionNotFound
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import CollectionInfo
from meshdex.node.store.codec import U32, RecordReader, corrupt, put_varint
from meshdex.node.store.env import Databases, get_u64

_NEXT_ID_KEY = b"next_collection_id"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def compact_json(value: Any) -> bytes:
    """JSON without spaces, keys sorted (equal values give equal bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, kw_only=True)
class CollectionRecord:
    """A collection's stored configuration."""

    id: int
    name: str
    embedder: EmbedderSpec
    chunking: ChunkingParams
    created_ms: int
    updated_ms: int

    @property
    def prefix(self) -> bytes:
        """The fixed-width prefix of this collection's keys in every sub-database."""
        return U32.pack(self.id)

    def encode(self) -> bytes:
        return compact_json({
            "id": self.id,
            "embedder": self.embedder.to_dict(),
            "chunking": self.chunking.to_dict(),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        })

    @classmethod
    def decode(cls, name: str, data: bytes) -> CollectionRecord:
        try:
            record = json.loads(bytes(data))
            return cls(
                id=record["id"],
                name=name,
                embedder=EmbedderSpec.from_dict(record["embedder"]),
                chunking=ChunkingParams.from_dict(record["chunking"]),
                created_ms=record["created_ms"],
                updated_ms=record["updated_ms"],
            )
        except (ValueError, KeyError, TypeError, InvalidArgument) as error:
            raise corrupt("collection", name.encode(), error) from error


@dataclass(kw_only=True)
class CollectionStats:
    """Counters kept up to date by every write (mutable: a write session edits them)."""

    documents: int = 0
    passages: int = 0
    tombstones: int = 0
    next_block: int = 1
    max_hlc: HLCTimestamp | None = None

    def encode(self) -> bytes:
        out = bytearray()
        for value in (self.documents, self.passages, self.tombstones, self.next_block):
            put_varint(out, value)
        if self.max_hlc is not None:
            out += self.max_hlc.pack()
        return bytes(out)

    @classmethod
    def decode(cls, key: bytes, data: bytes) -> CollectionStats:
        reader = RecordReader(data, what="collection stats", key=key)
        stats = cls(
            documents=reader.varint(),
            passages=reader.varint(),
            tombstones=reader.varint(),
            next_block=reader.varint(),
        )
        packed = reader.rest()
        if packed:
            try:
                stats.max_hlc = HLCTimestamp.unpack(packed)
            except (InvalidArgument, UnicodeDecodeError) as error:
                raise reader.corrupt(error) from error
        return stats


class Collections:
    """Reads and writes collection records and counters inside the caller's transaction."""

    def __init__(self, dbs: Databases) -> None:
        self._dbs = dbs
        # name -> (stored bytes, record): a search reads its collection's record dozens of
        # times, and decoding it (JSON, validated specs) costs more than comparing the bytes
        self._decoded: dict[str, tuple[bytes, CollectionRecord]] = {}

    def find(self, txn: lmdb.Transaction, name: str) -> CollectionRecord | None:
        raw = txn.get(name.encode(), db=self._dbs.collections)
        if raw is None:
            return None
        cached = self._decoded.get(name)
        if cached is not None and cached[0] == raw:
            return cached[1]
        record = CollectionRecord.decode(name, raw)
        self._decoded[name] = (raw, record)
        return record

    def get(self, txn: lmdb.Transaction, name: str) -> CollectionRecord:
        """The collection; ``CollectionNotFound`` if there is none by that name."""
        record = self.find(txn, name)
        if record is None:
            raise CollectionNotFound.named(name)
        return record

    def names(self, txn: lmdb.Transaction) -> list[str]:
        cursor = txn.cursor(db=self._dbs.collections)
        return [bytes(key).decode() for key in cursor.iternext(values=False)]

    def name_of(self, txn: lmdb.Transaction, collection_id: int) -> str:
        key = U32.pack(collection_id)
        raw = txn.get(key, db=self._dbs.collection_names)
        if raw is None:
            raise corrupt("collection id", key, "no collection has this id")
        return bytes(raw).decode()

    def create(
        self,
        txn: lmdb.Transaction,
        name: str,
        *,
        embedder: EmbedderSpec,
        chunking: ChunkingParams,
        created_ms: int | None = None,
        updated_ms: int | None = None,
    ) -> CollectionRecord:
        """A new empty collection with the next id; ``CollectionExists`` if the name is taken."""
        if self.find(txn, name) is not None:
            raise CollectionExists(f"collection {name!r} already exists")
        # Index files are named after the collection: on a case-insensitive file system
        # (macOS, Windows) "Notes" and "notes" would share one bundle.
        taken = next((other for other in self.names(txn) if other.casefold() == name.casefold()),
                     None)
        if taken is not None:
            raise CollectionExists(f"collection {taken!r} already exists, and names differing "
                                   "only in case would share their index files on macOS and "
                                   "Windows", hint=f"use {taken!r} or another name")
        collection_id = get_u64(txn, self._dbs.meta, _NEXT_ID_KEY) or 1
        txn.put(_NEXT_ID_KEY, (collection_id + 1).to_bytes(8, "big"), db=self._dbs.meta)
        created = created_ms if created_ms is not None else now_ms()
        record = CollectionRecord(
            id=collection_id,
            name=name,
            embedder=embedder,
            chunking=chunking,
            created_ms=created,
            updated_ms=updated_ms if updated_ms is not None else created,
        )
        txn.put(name.encode(), record.encode(), db=self._dbs.collections)
        txn.put(record.prefix, name.encode(), db=self._dbs.collection_names)
        self.put_stats(txn, record, CollectionStats())
        return record

    def touch(self, txn: lmdb.Transaction, record: CollectionRecord) -> None:
        """Note that the collection changed now."""
        updated = replace(record, updated_ms=now_ms())
        txn.put(record.name.encode(), updated.encode(), db=self._dbs.collections)

    def stats(self, txn: lmdb.Transaction, record: CollectionRecord) -> CollectionStats:
        raw = txn.get(record.prefix, db=self._dbs.stats)
        return CollectionStats.decode(record.prefix, raw) if raw is not None else CollectionStats()

    def put_stats(
        self, txn: lmdb.Transaction, record: CollectionRecord, stats: CollectionStats
    ) -> None:
        txn.put(record.prefix, stats.encode(), db=self._dbs.stats)

    def info(self, txn: lmdb.Transaction, name: str) -> CollectionInfo:
        record = self.get(txn, name)
        stats = self.stats(txn, record)
        return CollectionInfo(
            name=name,
            embedder=record.embedder,
            chunking=record.chunking,
            created_ms=record.created_ms,
            updated_ms=record.updated_ms,
            document_count=stats.documents,
            passage_count=stats.passages,
            tombstone_count=stats.tombstones,
        )

    def delete(self, txn: lmdb.Transaction, record: CollectionRecord) -> None:
        """Remove the collection's own records (the caller drops what is keyed under it)."""
        txn.delete(record.name.encode(), db=self._dbs.collections)
        txn.delete(record.prefix, db=self._dbs.collection_names)
        txn.delete(record.prefix, db=self._dbs.stats)
