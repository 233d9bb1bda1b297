"""The document store of one device: collections, documents, passages and the change log in LMDB.

One LMDB environment per data directory (``DATA_DIR/store``), with named sub-databases::

    meta          device_id, last change seq, last HLC stamp, format version
    collections   name -> JSON {embedder, chunking, created_ms, updated_ms}
    stats         name -> JSON {documents, passages, tombstones, max_hlc}
    documents     collection \\0 doc_id -> JSON {source, metadata, content_hash, hlc, deleted,
                  passage_keys}
    doc_texts     collection \\0 doc_id -> text of live documents (sync ships it)
    passages      passage key (SHA-256, 32 bytes) -> passage text, shared by collections
    passage_refs  passage key -> how many (collection, document) pairs use it (uint64)
    passage_docs  collection \\0 key(32) doc_id -> b"" : which documents hold a passage
    labels        label (8 bytes) -> passage key : the index's compact ids back to passages
    changes       seq (8 bytes, big-endian) -> JSON Change
    watermarks    collection \\0 origin device -> highest origin seq applied (uint64)

Every write is one transaction committed with fsync (LMDB's default durability, no
``writemap``/``nosync``/``nometasync``), so a write acknowledged to a caller survives kill -9.
A second writing process is refused by ``WriterLock``; readers open with ``readonly=True``.
Keys are sorted byte strings, so iteration is deterministic. Texts are stored as a tag byte
and UTF-8, zlib-compressed where that is smaller (``_pack_text``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np
from meshdex.index.chunking import ChunkingParams, chunk_text, passage_key, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition, InvalidArgument, NotFound
from meshdex.node.errors import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    StoreCorrupt,
)
from meshdex.node.hlc import HLCTimestamp, HybridLogicalClock
from meshdex.node.lock import WriterLock
from meshdex.node.paths import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    STORE_DIR_NAME,
    make_private,
)
from meshdex.node.records import (
    Change,
    ChangeOp,
    CollectionInfo,
    CollectionState,
    Document,
    DocumentInput,
    Outcome,
    RemoteChange,
)
from meshdex.node.validation import check_document

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
INITIAL_MAP_SIZE_BYTES = 256 * 1024 * 1024
MAX_MAP_SIZE_BYTES = 1 << 40
MAX_SUB_DATABASES = 16
MAX_READERS = 256

MIN_COMPRESSED_TEXT_BYTES = 128
TEXT_COMPRESSION_LEVEL = 6

_SEP = b"\0"
_TEXT_RAW = b"u"
_TEXT_ZLIB = b"z"
_U64 = struct.Struct(">Q")
_DB_NAMES = (
    "meta",
    "collections",
    "stats",
    "documents",
    "doc_texts",
    "passages",
    "passage_refs",
    "passage_docs",
    "labels",
    "changes",
    "watermarks",
)

T = TypeVar("T")


def content_hash(text: str) -> str:
    """Hex SHA-256 of a document's UTF-8 text: equal hashes mean an unchanged document."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _doc_key(collection: str, doc_id: str) -> bytes:
    return collection.encode() + _SEP + doc_id.encode()


def _prefix(collection: str) -> bytes:
    return collection.encode() + _SEP


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(bytes(data))
    except ValueError as error:
        raise StoreCorrupt(f"cannot decode stored {what}: {error}") from error


class Store:
    """The LMDB store of one data directory. Use ``Store.open``; close it (or use ``with``).

    Not for sharing between processes except as readers; within a process, methods are
    thread-safe (LMDB serialises write transactions).
    """

    def __init__(self, *, data_dir: Path, env: lmdb.Environment, lock: WriterLock | None) -> None:
        self.data_dir = data_dir
        self._env = env
        self._lock = lock
        self._dbs = {
            name: env.open_db(name.encode(), create=lock is not None) for name in _DB_NAMES
        }
        if lock is not None:
            self._initialise_meta()
        meta = self._read(self._load_meta)
        self.device_id: str = meta["device_id"]
        last = meta["hlc"]
        self._clock = HybridLogicalClock(self.device_id, last=last)

    # ----------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, data_dir: Path, *, readonly: bool = False) -> Store:
        """Open (creating if needed) the store in ``data_dir``.

        For writing (the default) this takes the data directory's writer lock and raises
        ``StoreLocked`` if another process holds it. ``readonly=True`` takes no lock and
        raises ``NotFound`` if no store exists there yet.
        """
        data_dir = Path(data_dir)
        store_dir = data_dir / STORE_DIR_NAME
        if readonly:
            if not (store_dir / "data.mdb").exists():
                raise NotFound(
                    f"no meshdex store in {data_dir}",
                    path=data_dir,
                    hint="run `meshdex init` or `meshdex add PATH` first, or pass --data-dir",
                )
            env = _open_env(
                store_dir, readonly=True, max_dbs=MAX_SUB_DATABASES, max_readers=MAX_READERS
            )
            return cls(data_dir=data_dir, env=env, lock=None)
        make_private(data_dir)
        store_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        lock = WriterLock(data_dir)
        try:
            env = _open_env(
                store_dir,
                map_size=INITIAL_MAP_SIZE_BYTES,
                max_dbs=MAX_SUB_DATABASES,
                max_readers=MAX_READERS,
                sync=True,
                metasync=True,
                writemap=False,
                mode=PRIVATE_FILE_MODE,
            )
            return cls(data_dir=data_dir, env=env, lock=lock)
        except BaseException:
            lock.release()
            raise

    @property
    def readonly(self) -> bool:
        return self._lock is None

    def close(self) -> None:
        """Close the environment and release the writer lock (idempotent)."""
        if self._env is not None:
            self._env.close()
            self._env = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------------- transactions

    def _begin_read(self) -> lmdb.Transaction:
        """A read-only snapshot transaction."""
        while True:
            try:
                return self._env.begin()
            except lmdb.MapResizedError:  # the writer process grew the map; adopt the new size
                self._env.set_mapsize(0)

    def _read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self._begin_read() as txn:
            return fn(txn)

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        if self._lock is None:
            raise FailedPrecondition(
                f"the store in {self.data_dir} is open read-only", path=self.data_dir
            )
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._grow()

    def _grow(self) -> None:
        size = self._env.info()["map_size"]
        if size >= MAX_MAP_SIZE_BYTES:
            raise FailedPrecondition(f"the store in {self.data_dir} reached {size} bytes")
        logger.info("growing LMDB map from %d to %d bytes", size, size * 2)
        self._env.set_mapsize(size * 2)

    def _initialise_meta(self) -> None:
        def init(txn: lmdb.Transaction) -> None:
            meta = self._dbs["meta"]
            version = txn.get(b"format_version", db=meta)
            if version is None:
                txn.put(b"format_version", _U64.pack(STORE_FORMAT_VERSION), db=meta)
                txn.put(b"device_id", secrets.token_hex(16).encode(), db=meta)
                txn.put(b"last_seq", _U64.pack(0), db=meta)
            elif _U64.unpack(version)[0] > STORE_FORMAT_VERSION:
                raise StoreCorrupt(
                    f"the store in {self.data_dir} has format version {_U64.unpack(version)[0]}; "
                    f"this meshdex reads up to {STORE_FORMAT_VERSION}",
                    path=self.data_dir,
                    hint="upgrade meshdex",
                )

        self._write(init)

    def _load_meta(self, txn: lmdb.Transaction) -> dict[str, Any]:
        meta = self._dbs["meta"]
        device = txn.get(b"device_id", db=meta)
        if device is None:
            raise StoreCorrupt(f"the store in {self.data_dir} has no device id", path=self.data_dir)
        hlc = txn.get(b"hlc", db=meta)
        return {
            "device_id": bytes(device).decode(),
            "hlc": HLCTimestamp.unpack(bytes(hlc)) if hlc else None,
        }

    # ---------------------------------------------------------------------- collections

    def create_collection(
        self, name: str, *, embedder: EmbedderSpec, chunking: ChunkingParams
    ) -> CollectionInfo:
        """Create an empty collection; ``CollectionExists`` if the name is taken."""

        def create(txn: lmdb.Transaction) -> None:
            if txn.get(name.encode(), db=self._dbs["collections"]) is not None:
                raise CollectionExists(f"collection {name!r} already exists")
            now = _now_ms()
            record = {
                "embedder": embedder.to_dict(),
                "chunking": chunking.to_dict(),
                "created_ms": now,
                "updated_ms": now,
            }
            txn.put(name.encode(), _dumps(record), db=self._dbs["collections"])
            txn.put(name.encode(), _dumps(_empty_stats()), db=self._dbs["stats"])

        self._write(create)
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection and its counts; ``CollectionNotFound`` if there is none by that name."""
        return self._read(lambda txn: self._collection_info(txn, name))

    def has_collection(self, name: str) -> bool:
        return self._read(
            lambda txn: txn.get(name.encode(), db=self._dbs["collections"]) is not None
        )

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, sorted by name."""

        def list_all(txn: lmdb.Transaction) -> list[CollectionInfo]:
            names = [
                bytes(key).decode()
                for key in txn.cursor(db=self._dbs["collections"]).iternext(values=False)
            ]
            return [self._collection_info(txn, name) for name in names]

        return self._read(list_all)

    def drop_collection(self, name: str) -> None:
        """Remove a collection with its documents, passages and log watermarks (local only)."""

        def drop(txn: lmdb.Transaction) -> None:
            info = self._collection_info(txn, name)
            prefix = _prefix(info.name)
            for db_name in ("documents", "doc_texts", "watermarks"):
                _delete_prefix(txn, self._dbs[db_name], prefix)
            for key in self._collection_passage_keys(txn, name):
                self._release_passage(txn, key)
            _delete_prefix(txn, self._dbs["passage_docs"], prefix)
            txn.delete(name.encode(), db=self._dbs["collections"])
            txn.delete(name.encode(), db=self._dbs["stats"])

        self._write(drop)

    def _collection_info(self, txn: lmdb.Transaction, name: str) -> CollectionInfo:
        raw = txn.get(name.encode(), db=self._dbs["collections"])
        if raw is None:
            raise CollectionNotFound(
                f"no collection named {name!r}",
                hint="`meshdex list` shows the collections; `meshdex init` creates one",
            )
        record = _loads(raw, f"collection {name!r}")
        stats = self._stats(txn, name)
        return CollectionInfo(
            name=name,
            embedder=EmbedderSpec.from_dict(record["embedder"]),
            chunking=ChunkingParams.from_dict(record["chunking"]),
            created_ms=record["created_ms"],
            updated_ms=record["updated_ms"],
            document_count=stats["documents"],
            passage_count=stats["passages"],
            tombstone_count=stats["tombstones"],
        )

    def _stats(self, txn: lmdb.Transaction, name: str) -> dict[str, Any]:
        raw = txn.get(name.encode(), db=self._dbs["stats"])
        return _loads(raw, f"stats of {name!r}") if raw is not None else _empty_stats()

    # ------------------------------------------------------------------------ documents

    def upsert_documents(self, collection: str, docs: Sequence[DocumentInput]) -> list[Outcome]:
        """Add or replace documents in one durable transaction; outcome per input, in order.

        Inputs must already be validated (``meshdex.node.validation``). A document whose text,
        metadata and source are unchanged is left alone (``UNCHANGED``, nothing logged); a
        changed text replaces the document's passages.
        """

        def upsert(txn: lmdb.Transaction) -> list[Outcome]:
            info = self._collection_info(txn, collection)
            session = _WriteSession(self, txn, collection)
            outcomes = [self._upsert_one(session, info.chunking, doc) for doc in docs]
            session.finish()
            return outcomes

        return self._write(upsert)

    def _upsert_one(
        self, session: _WriteSession, chunking: ChunkingParams, doc: DocumentInput
    ) -> Outcome:
        old = self._record(session.txn, session.collection, doc.id)
        live = old is not None and not old["deleted"]
        if (
            live
            and old["content_hash"] == content_hash(doc.text)
            and old["metadata"] == doc.metadata
            and old["source"] == doc.source
        ):
            return Outcome.UNCHANGED
        hlc = session.stamp()
        digest = self._put_document(session, chunking, doc, old=old, hlc=hlc)
        session.log(doc.id, ChangeOp.UPSERT, hlc, digest)
        return Outcome.UPDATED if live else Outcome.ADDED

    def _record(self, txn: lmdb.Transaction, collection: str, doc_id: str) -> dict | None:
        raw = txn.get(_doc_key(collection, doc_id), db=self._dbs["documents"])
        return _loads(raw, f"document {doc_id!r}") if raw is not None else None

    def _put_document(
        self,
        session: _WriteSession,
        chunking: ChunkingParams,
        doc: DocumentInput,
        *,
        old: dict | None,
        hlc: HLCTimestamp,
    ) -> str:
        """Write a live document over whatever ``old`` record was there, relinking passages.

        Returns the text's content hash.
        """
        digest = content_hash(doc.text)
        live = old is not None and not old["deleted"]
        if live and old["content_hash"] == digest:
            keys = [bytes.fromhex(k) for k in old["passage_keys"]]
        else:
            if live:
                self._unlink_passages(
                    session, doc.id, [bytes.fromhex(k) for k in old["passage_keys"]]
                )
            texts = chunk_text(doc.text, chunking)
            keys = [passage_key(text) for text in texts]
            self._link_passages(session, doc.id, keys, texts)
        record = {
            "source": doc.source,
            "metadata": doc.metadata,
            "content_hash": digest,
            "hlc": hlc.to_str(),
            "deleted": False,
            "passage_keys": [k.hex() for k in keys],
        }
        key = _doc_key(session.collection, doc.id)
        session.txn.put(key, _dumps(record), db=self._dbs["documents"])
        session.txn.put(key, _pack_text(doc.text), db=self._dbs["doc_texts"])
        if not live:
            session.stats["documents"] += 1
            if old is not None:
                session.stats["tombstones"] -= 1
        return digest

    def _put_tombstone(
        self, session: _WriteSession, doc_id: str, *, old: dict | None, hlc: HLCTimestamp
    ) -> None:
        """Mark a document deleted (a tombstone is written even if it was never seen here)."""
        if old is not None and not old["deleted"]:
            self._unlink_passages(session, doc_id, [bytes.fromhex(k) for k in old["passage_keys"]])
            session.stats["documents"] -= 1
        if old is None or not old["deleted"]:
            session.stats["tombstones"] += 1
        record = {
            "source": old["source"] if old else None,
            "metadata": {},
            "content_hash": None,
            "hlc": hlc.to_str(),
            "deleted": True,
            "passage_keys": [],
        }
        key = _doc_key(session.collection, doc_id)
        session.txn.put(key, _dumps(record), db=self._dbs["documents"])
        session.txn.delete(key, db=self._dbs["doc_texts"])

    def delete_documents(self, collection: str, ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Tombstone live documents; returns (deleted ids, ids that were not live)."""
        id_list = list(ids)

        def delete(txn: lmdb.Transaction) -> tuple[list[str], list[str]]:
            self._collection_info(txn, collection)
            session = _WriteSession(self, txn, collection)
            deleted, missing = [], []
            for doc_id in id_list:
                old = self._record(txn, collection, doc_id)
                if old is None or old["deleted"]:
                    missing.append(doc_id)
                    continue
                hlc = session.stamp()
                self._put_tombstone(session, doc_id, old=old, hlc=hlc)
                session.log(doc_id, ChangeOp.DELETE, hlc, None)
                deleted.append(doc_id)
            session.finish()
            return deleted, missing

        return self._write(delete)

    def apply_remote_changes(self, collection: str, changes: Sequence[RemoteChange]) -> list[bool]:
        """Merge writes received from peers by last-writer-wins on their HLC stamps.

        A change applies (``True``) only if its stamp is newer than the local version of the
        document (the device id in the stamp breaks ties, so every device picks the same
        winner); an older one is ignored (``False``). Either way the local clock moves past
        the stamp and the origin device's watermark advances. Applied changes enter this
        device's change log with their origin, so they can be passed on. One transaction: an
        invalid change (``InvalidArgument``) rejects the whole batch and changes nothing.
        """

        def apply(txn: lmdb.Transaction) -> list[bool]:
            info = self._collection_info(txn, collection)
            session = _WriteSession(self, txn, collection)
            applied = []
            for change in changes:
                session.merge(change.hlc, change.origin_device, change.origin_seq)
                old = self._record(txn, collection, change.doc_id)
                if old is not None and HLCTimestamp.from_str(old["hlc"]) >= change.hlc:
                    applied.append(False)
                    continue
                if change.op is ChangeOp.DELETE:
                    self._put_tombstone(session, change.doc_id, old=old, hlc=change.hlc)
                    digest = None
                else:
                    doc = check_document(change.document())
                    digest = self._put_document(
                        session, info.chunking, doc, old=old, hlc=change.hlc
                    )
                origin = (change.origin_device, change.origin_seq)
                session.log(change.doc_id, change.op, change.hlc, digest, origin=origin)
                applied.append(True)
            session.finish()
            return applied

        return self._write(apply)

    def get_document(self, collection: str, doc_id: str) -> Document:
        """The live document; ``DocumentNotFound`` if absent or deleted."""

        def get(txn: lmdb.Transaction) -> Document:
            self._collection_info(txn, collection)
            document = self._document(txn, collection, doc_id)
            if document is None:
                raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}")
            return document

        return self._read(get)

    def iter_documents(self, collection: str) -> Iterator[Document]:
        """Live documents of a collection, sorted by id (bytewise UTF-8)."""
        prefix = _prefix(collection)
        with self._begin_read() as txn:
            self._collection_info(txn, collection)
            cursor = txn.cursor(db=self._dbs["documents"])
            if not cursor.set_range(prefix):
                return
            for key in cursor.iternext(values=False):
                if not bytes(key).startswith(prefix):
                    return
                document = self._document(txn, collection, bytes(key)[len(prefix) :].decode())
                if document is not None:
                    yield document

    def _document(self, txn: lmdb.Transaction, collection: str, doc_id: str) -> Document | None:
        key = _doc_key(collection, doc_id)
        raw = txn.get(key, db=self._dbs["documents"])
        if raw is None:
            return None
        record = _loads(raw, f"document {doc_id!r}")
        if record["deleted"]:
            return None
        text = txn.get(key, db=self._dbs["doc_texts"])
        return Document(
            collection=collection,
            id=doc_id,
            text=_unpack_text(text) if text is not None else "",
            metadata=record["metadata"],
            source=record["source"],
            content_hash=record["content_hash"],
            hlc=HLCTimestamp.from_str(record["hlc"]),
            passage_keys=tuple(bytes.fromhex(k) for k in record["passage_keys"]),
        )

    # ------------------------------------------------------------------------- passages

    def _link_passages(
        self, session: _WriteSession, doc_id: str, keys: list[bytes], texts: list[str]
    ) -> None:
        txn, prefix = session.txn, _prefix(session.collection)
        seen: set[bytes] = set()
        for key, text in zip(keys, texts, strict=True):
            if key in seen:
                continue
            seen.add(key)
            if not _has_prefix(txn, self._dbs["passage_docs"], prefix + key):
                session.stats["passages"] += 1
            txn.put(prefix + key + doc_id.encode(), b"", db=self._dbs["passage_docs"])
            refs = _get_u64(txn, self._dbs["passage_refs"], key)
            if refs == 0:
                txn.put(key, _pack_text(text), db=self._dbs["passages"])
                label = _U64.pack(passage_label(key))
                holder = txn.get(label, db=self._dbs["labels"])
                if holder is None:
                    txn.put(label, key, db=self._dbs["labels"])
                elif bytes(holder) != key:
                    logger.warning("passage label collision on %s; keeping the first", label.hex())
            txn.put(key, _U64.pack(refs + 1), db=self._dbs["passage_refs"])

    def _unlink_passages(self, session: _WriteSession, doc_id: str, keys: list[bytes]) -> None:
        txn, prefix = session.txn, _prefix(session.collection)
        for key in dict.fromkeys(keys):
            txn.delete(prefix + key + doc_id.encode(), db=self._dbs["passage_docs"])
            if not _has_prefix(txn, self._dbs["passage_docs"], prefix + key):
                session.stats["passages"] -= 1
            self._release_passage(txn, key)

    def _release_passage(self, txn: lmdb.Transaction, key: bytes) -> None:
        refs = _get_u64(txn, self._dbs["passage_refs"], key) - 1
        if refs > 0:
            txn.put(key, _U64.pack(refs), db=self._dbs["passage_refs"])
            return
        txn.delete(key, db=self._dbs["passage_refs"])
        txn.delete(key, db=self._dbs["passages"])
        label = _U64.pack(passage_label(key))
        if txn.get(label, db=self._dbs["labels"]) == key:
            txn.delete(label, db=self._dbs["labels"])

    def _collection_passage_keys(self, txn: lmdb.Transaction, collection: str) -> list[bytes]:
        """One entry per (passage, document) pair of the collection."""
        prefix = _prefix(collection)
        cursor = txn.cursor(db=self._dbs["passage_docs"])
        keys = []
        if cursor.set_range(prefix):
            for raw in cursor.iternext(values=False):
                raw = bytes(raw)
                if not raw.startswith(prefix):
                    break
                keys.append(raw[len(prefix) : len(prefix) + 32])
        return keys

    def iter_passages(self, collection: str) -> Iterator[tuple[bytes, str]]:
        """The collection's live passages as (key, text), sorted by key, each once."""
        with self._begin_read() as txn:
            yield from self._iter_passages_in(txn, collection)

    def _iter_passages_in(
        self, txn: lmdb.Transaction, collection: str
    ) -> Iterator[tuple[bytes, str]]:
        prefix = _prefix(collection)
        self._collection_info(txn, collection)
        cursor = txn.cursor(db=self._dbs["passage_docs"])
        previous = None
        if not cursor.set_range(prefix):
            return
        for raw in cursor.iternext(values=False):
            raw = bytes(raw)
            if not raw.startswith(prefix):
                return
            key = raw[len(prefix) : len(prefix) + 32]
            if key == previous:
                continue
            previous = key
            yield key, _unpack_text(txn.get(key, db=self._dbs["passages"]))

    def passage_texts(self, collection: str, labels: np.ndarray) -> list[str]:
        """Texts for index labels, in order; ``NotFound`` names labels with no live passage."""

        def texts(txn: lmdb.Transaction) -> list[str]:
            out, missing = [], []
            for label in np.asarray(labels, dtype=np.uint64).tolist():
                key = txn.get(_U64.pack(label), db=self._dbs["labels"])
                text = txn.get(bytes(key), db=self._dbs["passages"]) if key is not None else None
                if text is None:
                    missing.append(label)
                    out.append("")
                else:
                    out.append(_unpack_text(text))
            if missing:
                raise NotFound(
                    f"{len(missing)} passage label(s) not in the store of collection "
                    f"{collection!r} (first: {missing[0]})",
                    hint="the index is older than the store; rebuild it",
                )
            return out

        return self._read(texts)

    def passage_key_for_label(self, label: int) -> bytes | None:
        """The passage key an index label stands for, or None if no live passage has it."""
        key = self._read(lambda txn: txn.get(_U64.pack(label), db=self._dbs["labels"]))
        return bytes(key) if key is not None else None

    def passage_documents(self, collection: str, key: bytes) -> list[str]:
        """Ids of the live documents of ``collection`` that contain the passage, sorted."""
        prefix = _prefix(collection) + key

        def docs(txn: lmdb.Transaction) -> list[str]:
            cursor = txn.cursor(db=self._dbs["passage_docs"])
            ids = []
            if cursor.set_range(prefix):
                for raw in cursor.iternext(values=False):
                    raw = bytes(raw)
                    if not raw.startswith(prefix):
                        break
                    ids.append(raw[len(prefix) :].decode())
            return ids

        return self._read(docs)

    # ----------------------------------------------------------------------- change log

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest change (0 for an empty log)."""
        return self._read(lambda txn: _get_u64(txn, self._dbs["meta"], b"last_seq"))

    @property
    def max_hlc(self) -> HLCTimestamp | None:
        """The newest HLC stamp this store issued or merged."""
        return self._read(self._load_meta)["hlc"]

    def changes_since(self, seq: int, *, collection: str | None = None) -> Iterator[Change]:
        """Changes with sequence number greater than ``seq``, oldest first."""
        if seq < 0:
            raise InvalidArgument(f"sequence number must be >= 0, got {seq}")
        with self._begin_read() as txn:
            cursor = txn.cursor(db=self._dbs["changes"])
            if not cursor.set_range(_U64.pack(seq + 1)):
                return
            for _, raw in cursor.iternext():
                change = Change.from_dict(_loads(raw, "change"))
                if collection is None or change.collection == collection:
                    yield change

    def state(self, collection: str) -> CollectionState:
        """Per-origin-device sequence watermarks and the newest stamp of a collection."""
        return self._read(lambda txn: self._read_state(txn, collection))

    def passage_snapshot(
        self, collection: str
    ) -> tuple[list[tuple[bytes, str]], CollectionState]:
        """The collection's live passages (as ``iter_passages``) and its state, read in one
        transaction: what a build indexes and the state its bundle records are the same
        moment, whatever is written meanwhile."""
        with self._begin_read() as txn:
            state = self._read_state(txn, collection)
            passages = list(self._iter_passages_in(txn, collection))
        return passages, state

    def _read_state(self, txn: lmdb.Transaction, collection: str) -> CollectionState:
        self._collection_info(txn, collection)
        prefix = _prefix(collection)
        cursor = txn.cursor(db=self._dbs["watermarks"])
        watermarks: dict[str, int] = {}
        if cursor.set_range(prefix):
            for key, value in cursor.iternext():
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                watermarks[key[len(prefix) :].decode()] = _U64.unpack(value)[0]
        max_hlc = self._stats(txn, collection)["max_hlc"]
        return CollectionState(
            collection=collection,
            watermarks=watermarks,
            max_hlc=HLCTimestamp.from_str(max_hlc) if max_hlc else None,
        )

    def store_bytes(self) -> int:
        """Bytes the LMDB environment uses on disk (pages in use)."""
        info, stat = self._env.info(), self._env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]


class _WriteSession:
    """Bookkeeping for one write transaction on one collection: seq, stamps, stats, log."""

    def __init__(self, store: Store, txn: lmdb.Transaction, collection: str) -> None:
        self.store, self.txn, self.collection = store, txn, collection
        self.seq = _get_u64(txn, store._dbs["meta"], b"last_seq")
        self.stats = store._stats(txn, collection)
        self.watermarks: dict[str, int] = {}
        self.newest: HLCTimestamp | None = None  # newest stamp written in this collection
        self.dirty = False

    def stamp(self) -> HLCTimestamp:
        """A fresh local stamp for a local write."""
        self.dirty = True
        return self.store._clock.now()

    def merge(self, remote: HLCTimestamp, origin_device: str, origin_seq: int) -> None:
        """Move the clock past a received stamp and note how far the origin has been seen."""
        self.dirty = True
        self.store._clock.update(remote)
        self.watermarks[origin_device] = max(self.watermarks.get(origin_device, 0), origin_seq)

    def log(
        self,
        doc_id: str,
        op: ChangeOp,
        hlc: HLCTimestamp,
        digest: str | None,
        *,
        origin: tuple[str, int] | None = None,
    ) -> None:
        self.seq += 1
        origin_device, origin_seq = origin or (self.store.device_id, self.seq)
        if origin is None:
            self.watermarks[origin_device] = self.seq
        self.newest = hlc if self.newest is None else max(self.newest, hlc)
        change = Change(
            seq=self.seq,
            collection=self.collection,
            doc_id=doc_id,
            op=op,
            hlc=hlc,
            content_hash=digest,
            origin_device=origin_device,
            origin_seq=origin_seq,
        )
        self.txn.put(_U64.pack(self.seq), _dumps(change.to_dict()), db=self.store._dbs["changes"])

    def finish(self) -> None:
        """Persist seq, clock, stats and watermarks if anything changed."""
        if not self.dirty:
            return
        dbs, txn = self.store._dbs, self.txn
        txn.put(b"last_seq", _U64.pack(self.seq), db=dbs["meta"])
        txn.put(b"hlc", self.store._clock.peek().pack(), db=dbs["meta"])
        if self.newest is not None:
            known = self.stats["max_hlc"]
            if known is None or HLCTimestamp.from_str(known) < self.newest:
                self.stats["max_hlc"] = self.newest.to_str()
        name = self.collection.encode()
        txn.put(name, _dumps(self.stats), db=dbs["stats"])
        record = _loads(txn.get(name, db=dbs["collections"]), "collection")
        record["updated_ms"] = _now_ms()
        txn.put(name, _dumps(record), db=dbs["collections"])
        for device, seq in self.watermarks.items():
            key = _prefix(self.collection) + device.encode()
            if seq > _get_u64(txn, dbs["watermarks"], key):
                txn.put(key, _U64.pack(seq), db=dbs["watermarks"])


def _open_env(store_dir: Path, **options: Any) -> lmdb.Environment:
    """``lmdb.open`` with its failures (e.g. opened twice in one process) as errors we own."""
    try:
        return lmdb.open(str(store_dir), **options)
    except lmdb.Error as error:
        raise FailedPrecondition(
            f"cannot open the LMDB store in {store_dir}: {error}", op="open", path=store_dir
        ) from error


def _pack_text(text: str) -> bytes:
    """UTF-8 text behind a one-byte tag, zlib-compressed when that saves space.

    Prose compresses 2-4x; this roughly halves the store, and inflating a passage for
    recompute costs microseconds next to the model call.
    """
    raw = text.encode("utf-8")
    if len(raw) >= MIN_COMPRESSED_TEXT_BYTES:
        packed = zlib.compress(raw, TEXT_COMPRESSION_LEVEL)
        if len(packed) < len(raw):
            return _TEXT_ZLIB + packed
    return _TEXT_RAW + raw


def _unpack_text(data: bytes) -> str:
    data = bytes(data)
    tag, body = data[:1], data[1:]
    try:
        if tag == _TEXT_RAW:
            return body.decode("utf-8")
        if tag == _TEXT_ZLIB:
            return zlib.decompress(body).decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as error:
        raise StoreCorrupt(f"stored text cannot be decoded: {error}") from error
    raise StoreCorrupt(f"stored text has an unknown encoding tag {tag!r}")


def _empty_stats() -> dict[str, Any]:
    return {"documents": 0, "passages": 0, "tombstones": 0, "max_hlc": None}


def _get_u64(txn: lmdb.Transaction, db: Any, key: bytes) -> int:
    raw = txn.get(key, db=db)
    return _U64.unpack(raw)[0] if raw is not None else 0


def _has_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> bool:
    cursor = txn.cursor(db=db)
    return cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix)


def _delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> None:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    while bytes(cursor.key()).startswith(prefix):
        if not cursor.delete():
            break
