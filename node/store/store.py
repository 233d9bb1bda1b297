"""``Store``: the document store of one device, a facade over the parts in this package.

Thread-safe within a process (writes are serialised by one lock, reads are LMDB snapshots);
one writing process per data directory (``WriterLock``), any number of read-only ones.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lmdb
import numpy as np
from meshdex.index.chunking import ChunkingParams, passage_key, passage_label
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import FailedPrecondition, NotFound
from meshdex.node.errors import (
    DataDirNotWritable,
    DocumentNotFound,
    StoreCorrupt,
    StoreLocked,
    StoreTooNew,
)
from meshdex.node.hlc import HLCTimestamp, HybridLogicalClock
from meshdex.node.lock import WriterLock
from meshdex.node.paths import PRIVATE_DIR_MODE, STORE_DIR_NAME, make_private
from meshdex.node.records import (
    Change,
    CollectionInfo,
    CollectionState,
    Conflict,
    Document,
    DocumentInfo,
    DocumentInput,
    Outcome,
    RemoteChange,
    SourceScope,
)
from meshdex.node.store import swap
from meshdex.node.store.blocks import BlockCache
from meshdex.node.store.changelog import ChangeLog, TombstonePurge
from meshdex.node.store.codec import U64
from meshdex.node.store.collections import Collections
from meshdex.node.store.devices import Devices, write_new_meta
from meshdex.node.store.documents import (
    Documents,
    DocumentWriter,
    passage_texts_of,
)
from meshdex.node.store.env import (
    CLOCK_KEY,
    DATA_FILE_NAME,
    DEVICE_ID_KEY,
    FORMAT_VERSION_KEY,
    LAST_SEQ_KEY,
    STORE_FORMAT_VERSION,
    Environment,
    delete_prefix,
    get_u64,
    open_lmdb,
)
from meshdex.node.store.migration import migrate_v1, upgrade_in_place
from meshdex.node.store.passage_reads import PassageReader
from meshdex.node.store.session import SessionParts, WriteSession

logger = logging.getLogger(__name__)

# ``compact_if_worthwhile``: free pages of at least this many bytes and this share of the file.
# A bulk add leaves about its last transaction's pages free (copy-on-write), a tenth or more of
# a fresh store; compacting costs a sequential copy, ~0.1 s for 10 MB.
AUTO_COMPACT_MIN_FREE_BYTES = 1024 * 1024
AUTO_COMPACT_MIN_FREE_FRACTION = 0.1
# ... or when the request grew the file by this share of what it was, and at least
# AUTO_COMPACT_MIN_GROWTH_BYTES: a bulk add leaves the B-tree leaves of randomly keyed records
# (passage labels) part-filled and its first blocks compressed before the collection's
# dictionary existed, which only a rewrite packs (docs corpus: 5.10 -> 4.37 MB in 0.1 s, after
# a 10 s add). Growth by half at a time keeps the copies' total within twice the final size.
AUTO_COMPACT_GROWTH_FRACTION = 0.5
AUTO_COMPACT_MIN_GROWTH_BYTES = 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class PeerBatchResult:
    """What ``apply_peer_batch`` did: applied or not, per change in order; conflicts kept."""

    applied: list[bool]
    conflicts: int


@dataclass(frozen=True, kw_only=True)
class CompactionReport:
    """Bytes of the store's data file before and after a compaction, the tombstones it
    dropped (deleted documents no other device has still to learn of), those it kept and the
    stores whose acknowledgement they wait for ("" for a paired peer not met yet)."""

    before_bytes: int
    after_bytes: int
    tombstones_dropped: int
    tombstones_kept: int = 0
    waiting_for: frozenset[str] = frozenset()


def stored_format_version(store_dir: Path) -> int | None:
    """The format version recorded in an existing store directory, None if it has no store."""
    if not (store_dir / DATA_FILE_NAME).exists():
        return None
    env = open_lmdb(store_dir, readonly=True)
    try:
        with env.begin() as txn:
            raw_meta = txn.get(b"meta")
            if raw_meta is None:
                return None
            meta = env.open_db(b"meta", txn=txn, create=False)
            raw = txn.get(FORMAT_VERSION_KEY, db=meta)
            return U64.unpack(raw)[0] if raw is not None else None
    finally:
        env.close()


@dataclass(frozen=True, kw_only=True)
class _Parts:
    """The parts over one environment. Compaction swaps them as a whole; every operation
    takes them once, so a read that began before a swap finishes on the environment it
    started on."""

    env: Environment
    devices: Devices
    collections: Collections
    documents: Documents
    log: ChangeLog

    @classmethod
    def over(cls, env: Environment) -> _Parts:
        devices = Devices(devices_db=env.dbs.devices, meta_db=env.dbs.meta)
        collections = Collections(env.dbs)
        documents = Documents.over(env.dbs, devices)
        log = ChangeLog(dbs=env.dbs, collections=collections, documents=documents,
                        devices=devices)
        return cls(env=env, devices=devices, collections=collections, documents=documents,
                   log=log)


class Store:
    """The LMDB store of one data directory. Use ``Store.open``; close it (or use ``with``)."""

    def __init__(self, *, data_dir: Path, env: Environment, lock: WriterLock | None) -> None:
        self.data_dir = data_dir
        self._lock = lock
        self._write_lock = threading.RLock()
        self._parts_lock = threading.Lock()
        self._readers: dict[int, int] = {}  # id(environment) -> reads under way on it
        self._retired: list[Environment] = []
        self.auto_compact_min_free_bytes = AUTO_COMPACT_MIN_FREE_BYTES
        self._parts: _Parts | None = _Parts.over(env)
        if lock is not None:
            self._write(self._initialise_meta)
        self.device_id: str = self._read(self._device_id)
        self._clock = HybridLogicalClock(self.device_id, last=self._read(self._stored_clock))

    # ----------------------------------------------------------------------------- opening

    @classmethod
    def open(cls, data_dir: Path, *, readonly: bool = False) -> Store:
        """Open (creating if needed) the store in ``data_dir``.

        For writing (the default) this takes the data directory's writer lock (``StoreLocked``
        if another process holds it), finishes an interrupted compaction or migration, and
        migrates a version-1 store in place. ``readonly=True`` takes no lock and raises
        ``NotFound`` if no store exists there yet; a store of an older format is first
        migrated, as a writing open would (``_migrate_for_reading``). A store newer than this
        program: ``StoreTooNew``.
        """
        data_dir = Path(data_dir)
        store_dir = data_dir / STORE_DIR_NAME
        if readonly:
            cls.require_existing(data_dir)
            version = cls._check_version(store_dir)
            if version < STORE_FORMAT_VERSION:
                cls._migrate_for_reading(data_dir, version)
            env = Environment(store_dir=store_dir, readonly=True, create=False)
            return cls(data_dir=data_dir, env=env, lock=None)
        try:
            make_private(data_dir)
            lock = WriterLock(data_dir)
        except OSError as error:
            DataDirNotWritable.raise_for(data_dir, error)
        try:
            swap.recover(data_dir)
            if cls._check_version(store_dir) == 1:
                migrate_v1(data_dir)
            store_dir.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            env = Environment(store_dir=store_dir, readonly=False, create=True)
            return cls(data_dir=data_dir, env=env, lock=lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """Whether ``data_dir`` holds a store (opening it would not create one)."""
        return (Path(data_dir) / STORE_DIR_NAME / DATA_FILE_NAME).exists()

    @staticmethod
    def require_existing(data_dir: Path) -> None:
        """``NotFound`` when ``data_dir`` holds no store; creates nothing. What a command that
        only works on an existing store checks first, so a mistyped ``--data-dir`` is refused
        instead of getting an empty store made there."""
        if not Store.exists(data_dir):
            raise NotFound(
                f"no meshdex store in {data_dir}",
                path=data_dir,
                hint="run `meshdex init` or `meshdex add PATH` first, or pass --data-dir",
            )

    @staticmethod
    def _check_version(store_dir: Path) -> int:
        """The store's format version (the current one for a store not yet written)."""
        version = stored_format_version(store_dir)
        if version is not None and version > STORE_FORMAT_VERSION:
            raise StoreTooNew(
                f"the store in {store_dir} has format version {version}; this meshdex reads "
                f"up to {STORE_FORMAT_VERSION}",
                path=store_dir,
                hint="upgrade meshdex",
            )
        return STORE_FORMAT_VERSION if version is None else version

    @classmethod
    def _migrate_for_reading(cls, data_dir: Path, version: int) -> None:
        """Migrate an older store before a read-only open, so that the first command after an
        upgrade of meshdex (often a search) works instead of asking for a writing one.

        A migration needs the writer lock. A process holding it opened the store for writing,
        which migrated it; the version is checked again. A user who cannot write the data
        directory gets the error that says what to do.
        """
        store_dir = data_dir / STORE_DIR_NAME
        try:
            cls.open(data_dir).close()
        except StoreLocked:
            if cls._check_version(store_dir) < STORE_FORMAT_VERSION:
                raise FailedPrecondition(
                    f"the store in {store_dir} has format version {version} and another "
                    f"process is migrating it to {STORE_FORMAT_VERSION}",
                    path=store_dir,
                    hint="wait for it to finish and run the command again",
                ) from None
        except DataDirNotWritable as error:
            raise FailedPrecondition(
                f"the store in {store_dir} has format version {version} and must be migrated "
                f"to {STORE_FORMAT_VERSION}, which needs write access ({error.reason})",
                path=store_dir,
                hint="run a writing command once (e.g. `meshdex compact`) as a user who can "
                     "write the data directory",
            ) from None

    def _initialise_meta(self, txn: lmdb.Transaction, p: _Parts) -> None:
        version = get_u64(txn, p.env.dbs.meta, FORMAT_VERSION_KEY)
        if not version:
            write_new_meta(txn, p.env.dbs, p.devices, secrets.token_hex(16))
        elif version < STORE_FORMAT_VERSION:
            upgrade_in_place(txn, p.env.dbs, p.documents, self.data_dir, version)

    def _device_id(self, txn: lmdb.Transaction, p: _Parts) -> str:
        device = txn.get(DEVICE_ID_KEY, db=p.env.dbs.meta)
        if device is None:
            raise StoreCorrupt(f"the store in {self.data_dir} has no device id", path=self.data_dir)
        return bytes(device).decode()

    @staticmethod
    def _stored_clock(txn: lmdb.Transaction, p: _Parts) -> HLCTimestamp | None:
        raw = txn.get(CLOCK_KEY, db=p.env.dbs.meta)
        return HLCTimestamp.unpack(bytes(raw)) if raw else None

    @property
    def readonly(self) -> bool:
        return self._lock is None

    @property
    def format_version(self) -> int:
        """The format version recorded in the open store."""
        return self._read(lambda txn, p: get_u64(txn, p.env.dbs.meta, FORMAT_VERSION_KEY))

    def close(self) -> None:
        """Close the environment and release the writer lock (idempotent).

        A write under way on another thread is let finish first (its caller was told nothing
        yet, and it is kept); closing under it made LMDB invalidate its transaction and wait,
        without limit, for that thread to release the write transaction. Later reads and
        writes get ``FailedPrecondition``."""
        with self._write_lock:
            if self._parts is not None:
                for env in [*self._retired, self._parts.env]:
                    env.close()
                self._retired.clear()
                self._parts = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --------------------------------------------------------------------- transactions

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[lmdb.Transaction, _Parts]]:
        """A read transaction on the current parts; an environment retired by compaction is
        closed once the last read on it ends."""
        with self._parts_lock:
            parts = self._open_parts()
            self._readers[id(parts.env)] = self._readers.get(id(parts.env), 0) + 1
        try:
            with parts.env.begin_read() as txn:
                yield txn, parts
        finally:
            with self._parts_lock:
                self._readers[id(parts.env)] -= 1
                self._close_idle_retired()

    def _close_idle_retired(self) -> None:
        for env in [env for env in self._retired if not self._readers.get(id(env))]:
            self._retired.remove(env)
            self._readers.pop(id(env), None)
            env.close()

    def _read(self, fn: Callable[[lmdb.Transaction, _Parts], T]) -> T:
        with self._snapshot() as (txn, parts):
            return fn(txn, parts)

    def _write(self, fn: Callable[[lmdb.Transaction, _Parts], T]) -> T:
        with self._write_lock:
            parts = self._open_parts()
            return parts.env.write(lambda txn: fn(txn, parts))

    def _open_parts(self) -> _Parts:
        if self._parts is None:
            raise FailedPrecondition(f"the store in {self.data_dir} is closed",
                                     path=self.data_dir)
        return self._parts

    def _session(self, txn: lmdb.Transaction, p: _Parts, collection: str) -> WriteSession:
        record = p.collections.get(txn, collection)
        parts = SessionParts(
            dbs=p.env.dbs, collections=p.collections, devices=p.devices,
            clock=self._clock, device_id=self.device_id,
        )
        return WriteSession(parts, txn, record)

    # ---------------------------------------------------------------------- collections

    def create_collection(
        self, name: str, *, embedder: EmbedderSpec, chunking: ChunkingParams
    ) -> CollectionInfo:
        """Create an empty collection; ``CollectionExists`` if the name is taken."""
        self._write(lambda txn, p: p.collections.create(
            txn, name, embedder=embedder, chunking=chunking))
        return self.get_collection(name)

    def get_collection(self, name: str) -> CollectionInfo:
        """The collection and its counts; ``CollectionNotFound`` if there is none by that name."""
        return self._read(lambda txn, p: p.collections.info(txn, name))

    def has_collection(self, name: str) -> bool:
        return self._read(lambda txn, p: p.collections.find(txn, name) is not None)

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, sorted by name."""
        return self._read(lambda txn, p: [
            p.collections.info(txn, name) for name in p.collections.names(txn)
        ])

    def drop_collection(self, name: str) -> None:
        """Remove a collection with its documents, passages, log entries and cursors (local)."""

        def drop(txn: lmdb.Transaction, p: _Parts) -> None:
            record = p.collections.get(txn, name)
            dbs, prefix = p.env.dbs, record.prefix
            p.documents.delete_all(txn, prefix)
            p.documents.blocks.drop_collection(txn, prefix)
            p.documents.passages.drop_collection(txn, prefix)
            for db in (dbs.watermarks, dbs.peer_cursors, dbs.conflicts):
                delete_prefix(txn, db, prefix)
            cursor = txn.cursor(db=dbs.changes)
            for key, value in list(cursor.iternext()):
                if bytes(value).startswith(prefix):
                    txn.delete(bytes(key), db=dbs.changes)
            p.collections.delete(txn, record)

        self._write(drop)

    # ------------------------------------------------------------------------ documents

    def upsert_documents(self, collection: str, docs: Sequence[DocumentInput]) -> list[Outcome]:
        """Add or replace documents in one durable transaction; outcome per input, in order.

        Inputs must already be validated (``meshdex.node.validation``). A document whose text,
        metadata and source are unchanged is left alone (``UNCHANGED``, nothing logged); a
        changed text replaces the document's passages.
        """

        def upsert(txn: lmdb.Transaction, p: _Parts) -> list[Outcome]:
            session = self._session(txn, p, collection)
            writer = DocumentWriter(p.documents, session, session.collection.chunking)
            outcomes = []
            for doc in docs:
                if writer.unchanged(doc):
                    outcomes.append(Outcome.UNCHANGED)
                    continue
                old = writer.current(doc.id)
                writer.put_live(doc, hlc=session.stamp())
                live = old is not None and not old.deleted
                outcomes.append(Outcome.UPDATED if live else Outcome.ADDED)
            writer.flush()
            session.finish()
            return outcomes

        return self._write(upsert)

    def delete_documents(
        self, collection: str, ids: Iterable[str], *, sources: Sequence[SourceScope] = ()
    ) -> tuple[list[str], list[str]]:
        """Tombstone live documents; returns (deleted ids, ids that were not live).

        ``sources`` also tombstones, in the same transaction, the live documents each scope
        owns and does not keep (``SourceScope``); those are never "not live".
        """
        id_list = list(ids)

        def delete(txn: lmdb.Transaction, p: _Parts) -> tuple[list[str], list[str]]:
            session = self._session(txn, p, collection)
            writer = DocumentWriter(p.documents, session, session.collection.chunking)
            deleted, missing = [], []
            stale = [
                doc_id
                for scope in sources
                for doc_id in p.documents.live_ids_under(txn, session.prefix, scope.owner_id)
                if scope.owns(doc_id) and doc_id not in scope.keep
            ]
            for doc_id in dict.fromkeys(id_list + stale):
                old = writer.current(doc_id)
                if old is None or old.deleted:
                    missing.append(doc_id)
                    continue
                writer.put_tombstone(doc_id, hlc=session.stamp())
                deleted.append(doc_id)
            writer.flush()
            session.finish()
            return deleted, missing

        return self._write(delete)

    def apply_remote_changes(self, collection: str, changes: Sequence[RemoteChange]) -> list[bool]:
        """Merge writes received from peers by last-writer-wins on their HLC stamps.

        The semantics are those of ``meshdex.node.store.changelog`` (LWW with device-id
        tie-break, idempotent, tombstones, conflicts kept); one transaction: an invalid change
        (``InvalidArgument``) rejects the whole batch and changes nothing.
        """

        def apply(txn: lmdb.Transaction, p: _Parts) -> list[bool]:
            session = self._session(txn, p, collection)
            writer = DocumentWriter(p.documents, session, session.collection.chunking)
            applied = p.log.apply_remote(session, writer, changes)
            writer.flush()
            session.finish()
            return applied

        return self._write(apply)

    def get_document(self, collection: str, doc_id: str) -> Document:
        """The live document; ``DocumentNotFound`` if absent or deleted."""

        def get(txn: lmdb.Transaction, p: _Parts) -> Document:
            record = p.collections.get(txn, collection)
            found = p.documents.record(txn, record.prefix, doc_id)
            if found is None or found.deleted:
                raise DocumentNotFound(f"no document {doc_id!r} in collection {collection!r}")
            return p.documents.document(txn, collection, record.prefix, found)

        return self._read(get)

    def iter_documents(self, collection: str, *, id_prefix: str = "") -> Iterator[Document]:
        """Live documents of a collection, sorted by id (bytewise UTF-8), from one snapshot;
        those whose id starts with ``id_prefix``."""
        with self._snapshot() as (txn, p):
            record = p.collections.get(txn, collection)
            cache = BlockCache()
            for found in p.documents.records(txn, record.prefix, id_prefix):
                if not found.deleted:
                    yield p.documents.document(txn, collection, record.prefix, found, cache)

    def metadata_fields(self, collection: str) -> set[str]:
        """Every metadata key of the collection's live documents, read without their texts."""

        def fields(txn: lmdb.Transaction, p: _Parts) -> set[str]:
            record = p.collections.get(txn, collection)
            return {key for found in p.documents.records(txn, record.prefix)
                    if not found.deleted for key in found.metadata}

        return self._read(fields)

    # ------------------------------------------------------------------------- passages

    def iter_passages(self, collection: str) -> Iterator[tuple[bytes, str]]:
        """The collection's live passages as (key, text), sorted by key, each once."""
        yield from self._read(lambda txn, p: self._passages_in(txn, p, collection))

    def passage_snapshot(
        self, collection: str
    ) -> tuple[list[tuple[bytes, str]], CollectionState]:
        """The collection's live passages (as ``iter_passages``) and its state, read in one
        transaction: what a build indexes and the state its bundle records are the same
        moment, whatever is written meanwhile."""
        return self._read(lambda txn, p: (
            self._passages_in(txn, p, collection), self._state_in(txn, p, collection)))

    @staticmethod
    def _passages_in(
        txn: lmdb.Transaction, p: _Parts, collection: str
    ) -> list[tuple[bytes, str]]:
        record = p.collections.get(txn, collection)
        cache = BlockCache()
        passages: dict[bytes, str] = {}
        for found in p.documents.records(txn, record.prefix):
            if found.deleted:
                continue
            text = p.documents.text(txn, record.prefix, found, cache)
            for passage in passage_texts_of(text, found.spans):
                passages.setdefault(passage_key(passage), passage)
        return sorted(passages.items())

    @contextmanager
    def passage_reads(self, collection: str) -> Iterator[PassageReader]:
        """The collection's passages in one read snapshot, for as long as the block runs: a
        search's candidate checks and the texts it recomputes (``PassageReader``)."""
        with self._snapshot() as (txn, p):
            yield PassageReader(p.documents, txn, p.collections.get(txn, collection).prefix,
                                collection=collection)

    def passage_texts(self, collection: str, labels: np.ndarray) -> list[str]:
        """Texts for index labels, in order; ``NotFound`` names labels with no live passage."""
        with self.passage_reads(collection) as reads:
            return reads.texts(np.asarray(labels, dtype=np.uint64).tolist())

    def passage_key_for_label(self, collection: str, label: int) -> bytes | None:
        """The key of the collection's passage with this index label, or None if none is live."""
        with self.passage_reads(collection) as reads:
            text = reads.text(label)
        return passage_key(text) if text is not None else None

    def passage_holders(self, collection: str, label: int) -> list[DocumentInfo]:
        """The live documents holding the passage with this index label, sorted by id,
        without their texts (one snapshot; what a search needs per candidate)."""
        with self.passage_reads(collection) as reads:
            return reads.holders(label)

    def passage_documents(self, collection: str, key: bytes) -> list[str]:
        """Ids of the live documents of ``collection`` that contain the passage, sorted."""
        return self._read(lambda txn, p: p.documents.passages.documents(
            txn, p.collections.get(txn, collection).prefix, passage_label(key)))

    # ----------------------------------------------------------------------- change log

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest change (0 for an empty log)."""
        return self._read(lambda txn, p: get_u64(txn, p.env.dbs.meta, LAST_SEQ_KEY))

    @property
    def max_hlc(self) -> HLCTimestamp | None:
        """The newest HLC stamp this store issued or merged."""
        return self._read(self._stored_clock)

    def changes_since(self, seq: int, *, collection: str | None = None) -> Iterator[Change]:
        """The latest change of each document written after ``seq``, oldest first, from one
        snapshot (semantics in ``meshdex.node.store.changelog``)."""
        with self._snapshot() as (txn, p):
            record = p.collections.get(txn, collection) if collection is not None else None
            yield from p.log.changes_since(txn, seq, record)

    def state(self, collection: str) -> CollectionState:
        """Per-origin-device sequence watermarks and the newest stamp of a collection."""
        return self._read(lambda txn, p: self._state_in(txn, p, collection))

    @staticmethod
    def _state_in(txn: lmdb.Transaction, p: _Parts, collection: str) -> CollectionState:
        record = p.collections.get(txn, collection)
        return CollectionState(
            collection=collection,
            watermarks=p.log.watermarks(txn, record.prefix),
            max_hlc=p.collections.stats(txn, record).max_hlc,
        )

    def peer_cursor(self, peer_device: str, collection: str) -> int:
        """How far ``peer_device`` acknowledged this device's log for ``collection`` (0: never)."""
        return self._read(lambda txn, p: p.log.peer_cursor(
            txn, p.collections.get(txn, collection).prefix, peer_device))

    def set_peer_cursor(self, peer_device: str, collection: str, seq: int) -> int:
        """Durably record the peer's acknowledgement of ``seq`` (monotonic); the stored value."""
        return self._write(lambda txn, p: p.log.set_peer_cursor(
            txn, p.collections.get(txn, collection).prefix, peer_device, seq))

    def applied_cursor(self, peer_device: str, collection: str) -> int:
        """How far this device has applied ``peer_device``'s log for ``collection`` (0: never)."""
        return self._read(lambda txn, p: p.log.applied_cursor(
            txn, p.collections.get(txn, collection).prefix, peer_device))

    def forget_peers(self, store_ids: Set[str]) -> None:
        """Forget the stores ``store_ids``: their cursors go, so the tombstones only they had
        not acknowledged can be dropped, and ``is_forgotten`` refuses them from then on (one
        holding a document deleted here meanwhile would bring it back)."""
        def forget(txn: lmdb.Transaction, p: _Parts) -> None:
            p.log.forget_peers(txn, store_ids)
            for store_id in store_ids:
                p.devices.forget(txn, store_id)

        self._write(forget)

    def is_forgotten(self, store_id: str) -> bool:
        """Whether ``forget_peers`` forgot the store ``store_id``."""
        return self._read(lambda txn, p: p.devices.is_forgotten(txn, store_id))

    def cursor_holders(self) -> set[str]:
        """The stores holding a replication cursor on any collection here."""
        return self._read(lambda txn, p: p.log.cursor_holders(txn))

    def changes_and_conflicts_since(
        self, seq: int, *, collection: str
    ) -> Iterator[Change | Conflict]:
        """``changes_since`` and the conflict records kept after ``seq``, merged in seq order,
        from one snapshot: what a peer resuming from ``seq`` is sent."""
        with self._snapshot() as (txn, p):
            record = p.collections.get(txn, collection)
            yield from heapq.merge(p.log.changes_since(txn, seq, record),
                                   p.log.conflicts_since(txn, record, seq),
                                   key=lambda item: item.seq)

    def apply_peer_batch(
        self,
        collection: str,
        changes: Sequence[RemoteChange],
        *,
        peer_device: str,
        through_seq: int,
        conflicts: Sequence[Conflict] = (),
    ) -> PeerBatchResult:
        """Merge a batch of ``peer_device``'s log (as ``apply_remote_changes``), keep the
        conflict records it carries (``ChangeLog.keep_conflict``) and raise the peer's
        applied cursor to ``through_seq`` — all in one durable transaction, so a crash
        leaves either all of it or none. ``conflicts`` in the result counts the records
        the changes caused here, not the ones received."""

        def apply(txn: lmdb.Transaction, p: _Parts) -> PeerBatchResult:
            session = self._session(txn, p, collection)
            before = p.log.count_conflicts(txn, session.collection)
            writer = DocumentWriter(p.documents, session, session.collection.chunking)
            applied = p.log.apply_remote(session, writer, changes) if changes else []
            writer.flush()
            caused = p.log.count_conflicts(txn, session.collection) - before
            for conflict in conflicts:
                p.log.keep_conflict(session, conflict)
            p.log.set_applied_cursor(txn, session.prefix, peer_device, through_seq)
            session.finish()
            return PeerBatchResult(applied=applied, conflicts=caused)

        return self._write(apply)

    def keep_conflicts(self, collection: str, conflicts: Sequence[Conflict]) -> int:
        """Keep conflict records (``ChangeLog.keep_conflict``: deduplicated by document and
        losing stamp) in one transaction; how many were written."""

        def keep(txn: lmdb.Transaction, p: _Parts) -> int:
            session = self._session(txn, p, collection)
            written = sum(p.log.keep_conflict(session, c) for c in conflicts)
            session.finish()
            return written

        return self._write(keep)

    def conflicts(self, collection: str) -> list[Conflict]:
        """Versions that lost last-writer-wins to a concurrent edit, by document id."""
        return self._read(lambda txn, p: p.log.conflicts(
            txn, p.collections.get(txn, collection)))

    def count_conflicts(self, collection: str) -> int:
        return self._read(lambda txn, p: p.log.count_conflicts(
            txn, p.collections.get(txn, collection)))

    # ---------------------------------------------------------------------- maintenance

    def store_bytes(self) -> int:
        """Bytes of the store's data file (what ``du`` counts for it, free pages included)."""
        return (self._open_parts().env.store_dir / DATA_FILE_NAME).stat().st_size

    def free_bytes(self) -> int:
        """Bytes of free pages in the data file (given back by ``compact``)."""
        env = self._open_parts().env
        used, total = env.used_and_file_pages()
        return max(0, total - used) * env.page_bytes

    def compact(self, *, paired: Mapping[str, Sequence[str]] | None = None) -> CompactionReport:
        """Drop tombstones every peer acknowledged, rewrite the text blocks that hold dead
        text, use an older dictionary or are part-filled (``TextBlocks.compact``, a few
        thousand blocks per transaction), then rewrite the store without free pages, every
        page full, and swap it in atomically (``Environment.copy_dense``, ``swap``).

        ``paired`` maps each collection to the store ids of the paired peers that share it
        ("" for one not met yet; a collection missing: none): a tombstone waits for them as
        well as for the peers with a cursor, and goes at once where there are neither
        (``ChangeLog.purge_acknowledged_tombstones``). None: the pairings are not known, and
        a collection's tombstones stay while no peer has a cursor on it.

        Writes wait meanwhile; reads go on. Reads and iterators already running finish on
        the old file, which stays open until the store is closed.
        """
        with self._write_lock:
            old = self._open_parts().env
            if old.readonly:
                raise FailedPrecondition(
                    f"the store in {self.data_dir} is open read-only", path=self.data_dir
                )
            before = self.store_bytes()
            purge = self._write(
                lambda txn, p: self._purge_acknowledged_tombstones(txn, p, paired))
            pass_ends = self._read(self._next_text_blocks)
            while not self._write(lambda txn, p: self._compact_texts(txn, p, pass_ends)):
                pass
            building = swap.fresh_building_dir(self.data_dir)
            old.copy_dense(building)
            swap.commit(self.data_dir, building)
            fresh = _Parts.over(Environment(
                store_dir=self.data_dir / STORE_DIR_NAME, readonly=False, create=True))
            with self._parts_lock:
                self._parts = fresh
                self._retired.append(old)
                self._close_idle_retired()
            report = CompactionReport(before_bytes=before, after_bytes=self.store_bytes(),
                                      tombstones_dropped=purge.dropped,
                                      tombstones_kept=purge.kept, waiting_for=purge.waiting_for)
        logger.info("compacted the store in %s: %d -> %d bytes, %d tombstones dropped, %d kept",
                    self.data_dir, report.before_bytes, report.after_bytes, purge.dropped,
                    purge.kept)
        return report

    @staticmethod
    def _purge_acknowledged_tombstones(
        txn: lmdb.Transaction, p: _Parts, paired: Mapping[str, Sequence[str]] | None
    ) -> TombstonePurge:
        dropped, kept, waiting_for = 0, 0, set()
        for name in p.collections.names(txn):
            record = p.collections.get(txn, name)
            stats = p.collections.stats(txn, record)
            sharing = None if paired is None else paired.get(name, ())
            purge = p.log.purge_acknowledged_tombstones(txn, record, stats, paired=sharing)
            if purge.dropped:
                p.collections.put_stats(txn, record, stats)
            dropped, kept = dropped + purge.dropped, kept + purge.kept
            waiting_for |= purge.waiting_for
        return TombstonePurge(dropped=dropped, kept=kept, waiting_for=frozenset(waiting_for))

    @staticmethod
    def _next_text_blocks(txn: lmdb.Transaction, p: _Parts) -> dict[str, int]:
        """Each collection's next text block number: where a compaction pass stops."""
        return {name: p.collections.stats(txn, p.collections.get(txn, name)).next_block
                for name in p.collections.names(txn)}

    @staticmethod
    def _compact_texts(txn: lmdb.Transaction, p: _Parts, pass_ends: dict[str, int]) -> bool:
        """One transaction's share of rewriting text blocks; True once all are done."""
        for name in p.collections.names(txn):
            record = p.collections.get(txn, name)
            stats = p.collections.stats(txn, record)
            done = p.documents.compact_texts(txn, record.prefix, stats,
                                             before_block=pass_ends.get(name, 0))
            p.collections.put_stats(txn, record, stats)
            if not done:
                return False
        return True

    def compact_if_worthwhile(
        self,
        *,
        bytes_before: int | None = None,
        pairings: Callable[[], Mapping[str, Sequence[str]] | None] | None = None,
    ) -> CompactionReport | None:
        """Compact when free pages pass ``auto_compact_min_free_bytes`` and a tenth of the
        file, or when the request that found the file at ``bytes_before`` grew it by half
        (``AUTO_COMPACT_GROWTH_FRACTION``) and at least a MiB. Meant for the end of a write
        request (a whole ``add``, a delete), not for each batch inside one: a batch leaves its
        own pages free for the next to reuse. ``pairings`` gives ``compact``'s ``paired``,
        asked only when a compaction is due."""
        if self.readonly:
            return None
        free, size = self.free_bytes(), self.store_bytes()
        many_free = free >= self.auto_compact_min_free_bytes and free >= (
            size * AUTO_COMPACT_MIN_FREE_FRACTION)
        before = size if bytes_before is None else bytes_before
        grown = size - before
        grew_by_half = grown >= AUTO_COMPACT_MIN_GROWTH_BYTES and (
            grown >= before * AUTO_COMPACT_GROWTH_FRACTION)
        if not (many_free or grew_by_half):
            return None
        return self.compact(paired=pairings() if pairings is not None else None)
