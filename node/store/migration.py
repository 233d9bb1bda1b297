"""Migrating older stores to this format, in place.

Formats 2 and 3 are upgraded in place, in one write transaction (``upgrade_in_place``), so
there is nothing to interrupt: a kill -9 leaves the old store. Format 2's text blocks (128 KiB
without a dictionary) stay readable as they are (``meshdex.node.store.blocks`` tells the two
framings apart), new ones are small and use the collection's dictionary, and compaction
rewrites the old ones. Format 3's passage references, which name their document by id, are
rewritten to name it by the seq of its record (``meshdex.node.store.passages``).

A version-1 store (JSON records, texts stored twice) is rebuilt.

Crash-safe by construction: the new store is built beside the old one in ``store-building``,
verified against it (per collection: live documents, tombstones and passages; a SHA-256 over
every document's id, state, text hash, stamp, metadata and source; the last seq and every
watermark), and only then swapped in by ``swap.commit``. Kill -9 at any point leaves either
the untouched version-1 store (migrated again on the next open) or the verified new one.

Sequence numbers, stamps and origins are kept, so peers' cursors and watermarks stay valid;
of each document's history only its latest change is kept (the version-2 log's rule).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.errors import InvalidArgument
from meshdex.node.errors import StoreCorrupt
from meshdex.node.hlc import HLCTimestamp, HybridLogicalClock
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import DocumentInput
from meshdex.node.store import swap
from meshdex.node.store.codec import U32, U64, corrupt
from meshdex.node.store.collections import Collections, compact_json
from meshdex.node.store.devices import Devices, write_new_meta
from meshdex.node.store.documents import Documents, DocumentWriter, content_hash
from meshdex.node.store.env import (
    CLOCK_KEY,
    DATA_FILE_NAME,
    FORMAT_VERSION_KEY,
    LAST_SEQ_KEY,
    MAX_SUB_DATABASES,
    STORE_FORMAT_VERSION,
    Databases,
    Environment,
    get_u64,
)
from meshdex.node.store.passages import reference_key
from meshdex.node.store.session import SessionParts, WriteSession
from tqdm import tqdm

logger = logging.getLogger(__name__)

MIGRATION_BATCH_DOCUMENTS = 512
_V1_SEP = b"\0"
_V1_DBS = ("meta", "collections", "stats", "documents", "doc_texts", "changes", "watermarks")


@dataclass(frozen=True, kw_only=True)
class MigrationReport:
    collections: int
    documents: int
    before_bytes: int
    after_bytes: int


@dataclass(frozen=True, kw_only=True)
class _V1Document:
    collection: str
    doc_id: str
    seq: int
    record: dict[str, Any]
    text: str | None
    origin_device: str
    origin_seq: int


class _V1Reader:
    """Reads a version-1 environment (the layout of ``git show e045a51:node/store.py``)."""

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction) -> None:
        self.txn = txn
        self.dbs = {name: env.open_db(name.encode(), txn=txn, create=False) for name in _V1_DBS}
        self._latest = self._last_changes()

    def json(self, db: str, key: bytes) -> Any:
        raw = self.txn.get(key, db=self.dbs[db])
        if raw is None:
            raise corrupt(f"version-1 {db} record", key, "missing")
        try:
            return json.loads(bytes(raw))
        except ValueError as error:
            raise corrupt(f"version-1 {db} record", key, error) from error

    def meta(self, key: bytes) -> bytes | None:
        raw = self.txn.get(key, db=self.dbs["meta"])
        return bytes(raw) if raw is not None else None

    def items(self, db: str) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.txn.cursor(db=self.dbs[db]).iternext():
            yield bytes(key), bytes(value)

    def text(self, key: bytes) -> str | None:
        raw = self.txn.get(key, db=self.dbs["doc_texts"])
        if raw is None:
            return None
        data = bytes(raw)
        try:
            if data[:1] == b"u":
                return data[1:].decode("utf-8")
            if data[:1] == b"z":
                return zlib.decompress(data[1:]).decode("utf-8")
        except (zlib.error, UnicodeDecodeError) as error:
            raise corrupt("version-1 text", key, error) from error
        raise corrupt("version-1 text", key, f"unknown tag {data[:1]!r}")

    def _last_changes(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The newest change of every (collection, document)."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for key, _ in self.items("changes"):
            change = self.json("changes", key)
            latest[(change["collection"], change["doc_id"])] = change
        return latest

    def documents(self, collection: str, last_seq: int) -> list[_V1Document]:
        """The collection's documents in log order (those without a change entry last)."""
        latest = self._latest
        prefix = collection.encode() + _V1_SEP
        out, unlogged = [], []
        cursor = self.txn.cursor(db=self.dbs["documents"])
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                key = bytes(key)
                if not key.startswith(prefix):
                    break
                doc_id = key[len(prefix) :].decode()
                record = self.json("documents", key)
                text = None if record["deleted"] else (self.text(key) or "")
                change = latest.get((collection, doc_id))
                if change is None or change["hlc"] != record["hlc"]:
                    unlogged.append((doc_id, record, text))
                    continue
                out.append(_V1Document(collection=collection, doc_id=doc_id,
                                       seq=change["seq"], record=record, text=text,
                                       origin_device=change["origin_device"],
                                       origin_seq=change["origin_seq"]))
        out.sort(key=lambda doc: doc.seq)
        for doc_id, record, text in unlogged:  # not in the log (never expected): log them anew
            last_seq += 1
            out.append(_V1Document(collection=collection, doc_id=doc_id, seq=last_seq,
                                   record=record, text=text,
                                   origin_device=HLCTimestamp.from_str(record["hlc"]).device_id,
                                   origin_seq=last_seq))
        return out


def upgrade_in_place(txn: lmdb.Transaction, dbs: Databases, documents: Documents,
                     data_dir: Path, version: int) -> None:
    """Bring a format-2 or format-3 store to this format inside the caller's one write
    transaction, so a kill -9 leaves the old store, upgraded again on the next open.

    Format 2's text blocks stay readable as they are (its ``dictionaries`` sub-database was
    created when the environment was opened for writing). Format 3's passage references name
    their document by id; format 4's by the seq of its record (``passages``)."""
    moved = _references_by_seq(txn, dbs, documents)
    txn.put(FORMAT_VERSION_KEY, U64.pack(STORE_FORMAT_VERSION), db=dbs.meta)
    blocks_note = ("; its text blocks stay readable as they are, `meshdex compact` rewrites "
                   "them smaller to read" if version < 3 else "")
    logger.warning("upgraded the store in %s from format %d to %d: %d passage reference(s) "
                   "now name their document by seq%s", data_dir, version, STORE_FORMAT_VERSION,
                   moved, blocks_note)


def _references_by_seq(txn: lmdb.Transaction, dbs: Databases, documents: Documents) -> int:
    """Rewrite format 3's ``collection + label + document id`` passage keys as
    ``collection + label + varint seq``; how many."""
    old = [(bytes(key), bytes(value)) for key, value in txn.cursor(db=dbs.passages).iternext()]
    seqs: dict[bytes, int] = {}
    for key, value in tqdm(old, desc="upgrading passage references", unit="passage",
                           disable=None):
        prefix, label, doc_key = key[:4], U64.unpack(key[4:12])[0], key[4 + 8:]
        seq = seqs.get(prefix + doc_key)
        if seq is None:
            try:
                record = documents.record(txn, prefix, doc_key.decode())
            except UnicodeDecodeError as error:
                raise corrupt("format-3 passage reference", key, error) from error
            if record is None or record.deleted:
                raise corrupt("format-3 passage reference", key, "its document is not live")
            seq = seqs[prefix + doc_key] = record.seq
        txn.delete(key, db=dbs.passages)
        txn.put(reference_key(prefix, label, seq), value, db=dbs.passages)
    return len(old)


def _digest_entry(digest: Any, doc_id: str, deleted: bool, text_hash: str | None,
                  hlc: str, metadata: dict[str, Any], source: str | None) -> None:
    digest.update(compact_json([doc_id, deleted, text_hash, hlc, metadata,
                                None if deleted else source]))


def migrate_v1(data_dir: Path) -> MigrationReport:
    """Migrate ``data_dir/store`` from format 1 (caller holds the writer lock)."""
    store_dir = data_dir / STORE_DIR_NAME
    before = (store_dir / DATA_FILE_NAME).stat().st_size
    old_env = lmdb.open(str(store_dir), readonly=True, max_dbs=MAX_SUB_DATABASES)
    try:
        with old_env.begin() as txn:
            reader = _V1Reader(old_env, txn)
            building = swap.fresh_building_dir(data_dir)
            new_env = Environment(store_dir=building, readonly=False, create=True)
            try:
                expected = _copy(reader, new_env)
                _verify(new_env, expected)
            except BaseException:
                new_env.close()
                shutil.rmtree(building, ignore_errors=True)
                raise
            new_env.close()
    except (KeyError, TypeError, InvalidArgument) as error:
        raise StoreCorrupt(
            f"cannot migrate the version-1 store in {data_dir}: {error!r}", path=data_dir,
            hint="the store was left as it was",
        ) from error
    finally:
        old_env.close()
    swap.commit(data_dir, building)
    after = (store_dir / DATA_FILE_NAME).stat().st_size
    report = MigrationReport(collections=len(expected["collections"]),
                             documents=expected["documents"], before_bytes=before,
                             after_bytes=after)
    logger.warning(
        "migrated the store in %s from format 1 to %d: %d collection(s), %d document(s), "
        "%d -> %d bytes", data_dir, STORE_FORMAT_VERSION, report.collections,
        report.documents, before, after,
    )
    return report


def _copy(reader: _V1Reader, env: Environment) -> dict[str, Any]:
    """Write everything the version-1 store holds into ``env``; returns what to verify."""
    device_id = (reader.meta(b"device_id") or b"").decode()
    if not device_id:
        raise StoreCorrupt("the version-1 store has no device id")
    last_seq = U64.unpack(reader.meta(b"last_seq") or U64.pack(0))[0]
    clock_raw = reader.meta(b"hlc")
    clock = HybridLogicalClock(device_id,
                               last=HLCTimestamp.unpack(clock_raw) if clock_raw else None)
    dbs = env.dbs
    devices = Devices(devices_db=dbs.devices, meta_db=dbs.meta)
    collections = Collections(dbs)
    documents = Documents.over(dbs, devices)
    parts = SessionParts(dbs=dbs, collections=collections, devices=devices, clock=clock,
                         device_id=device_id)

    env.write(lambda txn: write_new_meta(txn, dbs, devices, device_id))
    names = [bytes(key).decode() for key, _ in reader.items("collections")]
    expected: dict[str, Any] = {"collections": {}, "documents": 0, "watermarks": {}}
    docs_by_collection = {name: reader.documents(name, last_seq) for name in names}
    total = sum(len(docs) for docs in docs_by_collection.values())
    bar = tqdm(total=total, desc=f"migrating store to format {STORE_FORMAT_VERSION}", unit="doc",
               disable=None)
    for name in names:
        config = reader.json("collections", name.encode())
        stats = reader.json("stats", name.encode())
        record = env.write(lambda txn, name=name, config=config: collections.create(
            txn, name, embedder=EmbedderSpec.from_dict(config["embedder"]),
            chunking=ChunkingParams.from_dict(config["chunking"]),
            created_ms=config["created_ms"], updated_ms=config["updated_ms"]))
        docs = docs_by_collection[name]
        digest = hashlib.sha256()
        for doc in sorted(docs, key=lambda doc: doc.doc_id.encode()):  # the order of keys
            text_hash = content_hash(doc.text) if doc.text is not None else None
            if text_hash is not None and text_hash != doc.record["content_hash"]:
                raise corrupt("version-1 text", f"{name}/{doc.doc_id}".encode(),
                              "its hash differs from the document's content hash")
            _digest_entry(digest, doc.doc_id, doc.record["deleted"], text_hash,
                          doc.record["hlc"], doc.record["metadata"], doc.record["source"])
        for start in range(0, len(docs), MIGRATION_BATCH_DOCUMENTS):
            batch = docs[start : start + MIGRATION_BATCH_DOCUMENTS]
            env.write(lambda txn, batch=batch, record=record: _write_batch(
                parts, documents, txn, record, batch))
            bar.update(len(batch))
            last_seq = max(last_seq, *(doc.seq for doc in batch))
        env.write(lambda txn, record=record: txn.put(
            record.name.encode(), record.encode(), db=dbs.collections))
        expected["collections"][name] = {
            "documents": stats["documents"], "passages": stats["passages"],
            "tombstones": stats["tombstones"], "digest": digest.hexdigest(),
        }
        expected["documents"] += len(docs)
    bar.close()
    for key, value in reader.items("watermarks"):
        name, _, device = key.partition(_V1_SEP)
        expected["watermarks"][(name.decode(), device.decode())] = U64.unpack(value)[0]

    def finish(txn: lmdb.Transaction) -> None:
        txn.put(LAST_SEQ_KEY, U64.pack(last_seq), db=dbs.meta)
        if clock_raw:
            txn.put(CLOCK_KEY, clock_raw, db=dbs.meta)
        for (name, device), seq in expected["watermarks"].items():
            record = collections.find(txn, name)
            if record is not None:
                key = record.prefix + U32.pack(devices.index(txn, device))
                txn.put(key, U64.pack(seq), db=dbs.watermarks)

    env.write(finish)
    expected["last_seq"] = last_seq
    return expected


def _write_batch(parts: SessionParts, documents: Documents, txn: lmdb.Transaction,
                 record: Any, batch: list[_V1Document]) -> None:
    session = WriteSession(parts, txn, record)
    writer = DocumentWriter(documents, session, record.chunking)
    for doc in batch:
        session.seq = doc.seq - 1  # keep the version-1 seq: peers' cursors refer to it
        hlc = HLCTimestamp.from_str(doc.record["hlc"])
        origin = (doc.origin_device, doc.origin_seq)
        if doc.record["deleted"]:
            writer.put_tombstone(doc.doc_id, hlc=hlc, origin=origin)
        else:
            writer.put_live(DocumentInput(id=doc.doc_id, text=doc.text or "",
                                          metadata=doc.record["metadata"],
                                          source=doc.record["source"]), hlc=hlc, origin=origin)
    writer.flush()
    session.finish()


def _verify(env: Environment, expected: dict[str, Any]) -> None:
    """Compare the new store with what the version-1 store held; ``StoreCorrupt`` if unequal."""
    dbs = env.dbs
    devices = Devices(devices_db=dbs.devices, meta_db=dbs.meta)
    collections = Collections(dbs)
    documents = Documents.over(dbs, devices)
    problems = []
    with env.begin_read() as txn:
        for name, want in expected["collections"].items():
            record = collections.get(txn, name)
            stats = collections.stats(txn, record)
            got = {"documents": stats.documents, "passages": stats.passages,
                   "tombstones": stats.tombstones}
            digest = hashlib.sha256()
            for doc in documents.records(txn, record.prefix):
                text_hash = None if doc.deleted else content_hash(
                    documents.text(txn, record.prefix, doc))
                _digest_entry(digest, doc.doc_id, doc.deleted, text_hash, doc.hlc.to_str(),
                              doc.metadata, doc.source)
            got["digest"] = digest.hexdigest()
            if got != want:
                problems.append(f"collection {name!r}: expected {want}, got {got}")
        for (name, device), seq in expected["watermarks"].items():
            record = collections.find(txn, name)
            index = devices.lookup(txn, device)
            got_seq = (get_u64(txn, dbs.watermarks, record.prefix + U32.pack(index))
                       if record is not None and index is not None else None)
            if record is not None and got_seq != seq:
                problems.append(f"watermark of {device} in {name!r}: {got_seq} != {seq}")
        last_seq = U64.unpack(txn.get(LAST_SEQ_KEY, db=dbs.meta))[0]
        if last_seq != expected["last_seq"]:
            problems.append(f"last seq {last_seq} != {expected['last_seq']}")
    if problems:
        raise StoreCorrupt(
            "migrating the version-1 store did not reproduce it: " + "; ".join(problems),
            hint="the version-1 store was left as it was; report this as a bug",
        )

