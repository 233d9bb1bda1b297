"""The change log of one device and how writes from peers merge into it. Peer sync streams it.

``changes``       seq u64 -> collection u32 + document id (a few dozen bytes, never the text)
``watermarks``    collection u32 + device index u32 -> highest origin seq applied (u64)
``peer_cursors``  collection u32 + peer device index u32 -> this device's seq the peer has
                  acknowledged (u64), then the peer's seq this device has applied (u64; a
                  record of 8 bytes predates it and means 0)
``conflicts``     collection u32 + document id + 0x00 + losing stamp -> the losing version,
                  its winner's stamp and the seq this device kept it at

Contract (what ``meshdex.sync`` builds on):

- Every local write and every applied remote write gets the next ``seq`` of this device, in
  commit order, and survives restarts. ``changes_since(seq)`` yields entries with a greater
  seq, oldest first, from one read snapshot.
- A document has one entry: its latest write. Writing it again removes the superseded entry,
  so the log is as long as the collection, not its history. An entry's stamp, op, origin and
  content are the document's current record: the shipper reads the current document.
  A peer resuming from its cursor therefore receives every document that changed since, in
  its latest version, and nothing it already has at that version.
- Deletes are tombstones (records with the deleted flag); they stay in the log so peers learn
  of them, until every device that may hold the document has acknowledged them: then
  ``purge_acknowledged_tombstones`` (run by ``Store.compact``) drops record and entry. Those
  devices are every peer with a cursor (either way) and, when the caller names them, the
  paired peers sharing the collection, one not yet acknowledging anything counting as 0.
  Told that no paired peer shares the collection and finding no cursor, it drops every
  tombstone: no other device got the documents from here. Not told, it keeps them all
  while there is no cursor. It reports what it kept and the stores those wait for;
  ``forget_peers`` drops a gone device's cursors so they wait for it no longer.
- ``state(collection).watermarks`` maps each origin device to the highest origin seq applied
  here (local writes included); a peer uses it to tell what this device has seen.
- ``apply_remote_changes`` merges by last-writer-wins on the HLC stamp, the device id in the
  stamp breaking ties, so every device picks the same winner. It is idempotent: re-applying a
  change changes nothing. An applied change enters this log with its origin, so it can be
  passed on. One transaction per batch: an invalid change rejects the whole batch.
- A version that loses to a concurrent one is kept as a ``Conflict``: an incoming change this
  device had not seen (origin seq above its watermark) that is older than the local version,
  or a local version the incoming change's device had not acknowledged (its seq above that
  device's peer cursor) that the incoming change replaces. Replays create none, nor do two
  devices making the same change (both deleting a document, or writing the same version).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass

import lmdb
import zstandard
from meshdex.index.errors import InvalidArgument
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import Change, ChangeOp, Conflict, RemoteChange
from meshdex.node.store.blocks import BlockCache
from meshdex.node.store.codec import U32, U64, RecordReader, corrupt, put_bytes, put_varint
from meshdex.node.store.collections import (
    CollectionRecord,
    Collections,
    CollectionStats,
    compact_json,
)
from meshdex.node.store.devices import Devices
from meshdex.node.store.documents import (
    DocumentRecord,
    Documents,
    DocumentWriter,
    content_hash,
)
from meshdex.node.store.env import LAST_SEQ_KEY, Databases, get_u64, scan_prefix
from meshdex.node.store.session import WriteSession
from meshdex.node.validation import check_document

_CONFLICT_DELETE = 0x01
_CONFLICT_HAS_TEXT = 0x02
_CONFLICT_HAS_SOURCE = 0x04
_CONFLICT_HAS_SEQ = 0x08  # records kept before conflicts replicated have none (seq 0)


@dataclass(frozen=True, kw_only=True)
class TombstonePurge:
    """What one collection's tombstone purge did: dropped, kept, and the stores whose
    acknowledgement a kept tombstone waits for ("" for a paired peer not met yet)."""

    dropped: int = 0
    kept: int = 0
    waiting_for: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class _Positions:
    """Where replication with one peer stands in one collection, both ways."""

    acknowledged: int  # this device's log, as far as the peer confirmed holding it
    applied: int  # the peer's log, as far as this device holds it

    @classmethod
    def decode(cls, raw: bytes | None) -> _Positions:
        if raw is None:
            return cls(acknowledged=0, applied=0)
        raw = bytes(raw)
        applied = U64.unpack(raw[8:16])[0] if len(raw) >= 16 else 0
        return cls(acknowledged=U64.unpack(raw[:8])[0], applied=applied)

    def encode(self) -> bytes:
        return U64.pack(self.acknowledged) + U64.pack(self.applied)


class ChangeLog:
    def __init__(
        self, *, dbs: Databases, collections: Collections, documents: Documents, devices: Devices
    ) -> None:
        self._dbs, self._collections = dbs, collections
        self._documents, self._devices = documents, devices

    # ------------------------------------------------------------------------ reading

    def changes_since(
        self, txn: lmdb.Transaction, seq: int, collection: CollectionRecord | None
    ) -> Iterator[Change]:
        """Entries after ``seq`` (of one collection, or all), oldest first."""
        if seq < 0:
            raise InvalidArgument(f"sequence number must be >= 0, got {seq}")
        cursor = txn.cursor(db=self._dbs.changes)
        if not cursor.set_range(U64.pack(seq + 1)):
            return
        names: dict[bytes, str] = {}
        cache = BlockCache()
        for key, value in cursor.iternext():
            key, value = bytes(key), bytes(value)
            prefix, doc_id = value[:4], value[4:].decode()
            if collection is not None and prefix != collection.prefix:
                continue
            if prefix not in names:
                names[prefix] = self._collections.name_of(txn, U32.unpack(prefix)[0])
            record = self._documents.record(txn, prefix, doc_id)
            entry_seq = U64.unpack(key)[0]
            if record is None or record.seq != entry_seq:
                raise corrupt("change", key, "its document does not record this change")
            yield self._change(txn, names[prefix], prefix, record, cache)

    def _change(
        self,
        txn: lmdb.Transaction,
        collection: str,
        prefix: bytes,
        record: DocumentRecord,
        cache: BlockCache,
    ) -> Change:
        digest = None
        if not record.deleted:
            digest = content_hash(self._documents.text(txn, prefix, record, cache))
        return Change(
            seq=record.seq,
            collection=collection,
            doc_id=record.doc_id,
            op=ChangeOp.DELETE if record.deleted else ChangeOp.UPSERT,
            hlc=record.hlc,
            content_hash=digest,
            origin_device=record.origin_device,
            origin_seq=record.origin_seq,
        )

    def watermarks(self, txn: lmdb.Transaction, prefix: bytes) -> dict[str, int]:
        return {
            self._devices.name(txn, U32.unpack(device)[0]): U64.unpack(seq)[0]
            for device, seq in scan_prefix(txn, self._dbs.watermarks, prefix)
        }

    # ------------------------------------------------------------------ peer cursors

    def _positions(self, txn: lmdb.Transaction, prefix: bytes, peer_device: str) -> _Positions:
        index = self._devices.lookup(txn, peer_device)
        if index is None:
            return _Positions(acknowledged=0, applied=0)
        return _Positions.decode(txn.get(prefix + U32.pack(index), db=self._dbs.peer_cursors))

    def _put_positions(
        self, txn: lmdb.Transaction, prefix: bytes, peer_device: str, positions: _Positions
    ) -> None:
        key = prefix + U32.pack(self._devices.index(txn, peer_device))
        txn.put(key, positions.encode(), db=self._dbs.peer_cursors)

    def peer_cursor(self, txn: lmdb.Transaction, prefix: bytes, peer_device: str) -> int:
        """The seq of this device's log that ``peer_device`` acknowledged (0 if none)."""
        return self._positions(txn, prefix, peer_device).acknowledged

    def set_peer_cursor(
        self, txn: lmdb.Transaction, prefix: bytes, peer_device: str, seq: int
    ) -> int:
        """Raise the peer's acknowledged seq to ``seq`` (never lowers it); returns the stored
        value. ``InvalidArgument`` for a seq below 0 or beyond this log's end."""
        last = get_u64(txn, self._dbs.meta, LAST_SEQ_KEY)
        if not 0 <= seq <= last:
            raise InvalidArgument(f"acknowledged seq must be in [0, {last}], got {seq}")
        old = self._positions(txn, prefix, peer_device)
        stored = max(seq, old.acknowledged)
        self._put_positions(txn, prefix, peer_device,
                            _Positions(acknowledged=stored, applied=old.applied))
        return stored

    def applied_cursor(self, txn: lmdb.Transaction, prefix: bytes, peer_device: str) -> int:
        """How far this device has applied ``peer_device``'s log (0 if never)."""
        return self._positions(txn, prefix, peer_device).applied

    def set_applied_cursor(
        self, txn: lmdb.Transaction, prefix: bytes, peer_device: str, seq: int
    ) -> int:
        """Raise the applied cursor to ``seq`` (never lowers it: a late, older batch cannot
        move it back); returns the stored value. The seq is the peer's, so not bounded by
        this log."""
        if seq < 0:
            raise InvalidArgument(f"applied seq must be >= 0, got {seq}")
        old = self._positions(txn, prefix, peer_device)
        stored = max(seq, old.applied)
        if stored != old.applied:
            self._put_positions(txn, prefix, peer_device,
                                _Positions(acknowledged=old.acknowledged, applied=stored))
        return stored

    def purge_acknowledged_tombstones(
        self,
        txn: lmdb.Transaction,
        collection: CollectionRecord,
        stats: CollectionStats,
        *,
        paired: Sequence[str] | None,
    ) -> TombstonePurge:
        """Drop the tombstones (record and log entry) that every peer with a cursor on the
        collection and every store id in ``paired`` (the paired peers sharing it, "" for one
        whose store is not known yet) has acknowledged; what went, what stays and whose
        acknowledgement it waits for. ``paired`` None: the pairings are not known, and nothing
        goes while no peer has a cursor."""
        if not stats.tombstones:  # the scan below reads the whole log
            return TombstonePurge()
        acknowledgements = {
            self._devices.name(txn, U32.unpack(device)[0]): _Positions.decode(value).acknowledged
            for device, value in scan_prefix(txn, self._dbs.peer_cursors, collection.prefix)}
        for store_id in paired or ():
            acknowledgements.setdefault(
                store_id, self.peer_cursor(txn, collection.prefix, store_id) if store_id else 0)
        if acknowledgements:
            acknowledged = min(acknowledgements.values())
        elif paired is not None:
            acknowledged = get_u64(txn, self._dbs.meta, LAST_SEQ_KEY)
        else:
            return TombstonePurge(kept=stats.tombstones)
        purged, last_kept = [], 0
        cursor = txn.cursor(db=self._dbs.changes)
        for key, value in cursor.iternext():
            key, value = bytes(key), bytes(value)
            if value[:4] != collection.prefix:
                continue
            record = self._documents.record(txn, collection.prefix, value[4:].decode())
            if record is None or not record.deleted:
                continue
            seq = U64.unpack(key)[0]
            if seq <= acknowledged:
                purged.append((key, collection.prefix + value[4:]))
            else:
                last_kept = seq
        for change_key, document_key in purged:
            txn.delete(change_key, db=self._dbs.changes)
            txn.delete(document_key, db=self._dbs.documents)
        stats.tombstones -= len(purged)
        return TombstonePurge(
            dropped=len(purged), kept=stats.tombstones,
            waiting_for=frozenset(store_id for store_id, seq in acknowledgements.items()
                                  if seq < last_kept))

    def forget_peers(self, txn: lmdb.Transaction, store_ids: Set[str]) -> None:
        """Drop every collection's cursors of the stores ``store_ids``: their acknowledgements
        hold no tombstone back any more (``Store.forget_peers`` also refuses them after)."""
        forgotten = [key for key, _ in scan_prefix(txn, self._dbs.peer_cursors, b"")
                     if self._devices.name(txn, U32.unpack(key[4:8])[0]) in store_ids]
        for key in forgotten:
            txn.delete(key, db=self._dbs.peer_cursors)

    def cursor_holders(self, txn: lmdb.Transaction) -> set[str]:
        """The stores that hold a cursor on any collection of this log."""
        return {self._devices.name(txn, U32.unpack(key[4:8])[0])
                for key, _ in scan_prefix(txn, self._dbs.peer_cursors, b"")}

    # --------------------------------------------------------------------- conflicts

    def conflicts(self, txn: lmdb.Transaction, collection: CollectionRecord) -> list[Conflict]:
        """The collection's conflict records, by document id then losing stamp."""
        out = []
        for suffix, value in scan_prefix(txn, self._dbs.conflicts, collection.prefix):
            out.append(self._decode_conflict(collection, suffix, value))
        return out

    def count_conflicts(self, txn: lmdb.Transaction, collection: CollectionRecord) -> int:
        return sum(1 for _ in scan_prefix(txn, self._dbs.conflicts, collection.prefix))

    def _keep_conflict(
        self,
        session: WriteSession,
        loser: RemoteChange | DocumentRecord,
        loser_text: str | None,
        winner: HLCTimestamp,
    ) -> None:
        deleted = (
            loser.op is ChangeOp.DELETE if isinstance(loser, RemoteChange) else loser.deleted
        )
        self.keep_conflict(session, Conflict(
            collection=session.collection.name,
            doc_id=loser.doc_id,
            op=ChangeOp.DELETE if deleted else ChangeOp.UPSERT,
            hlc=loser.hlc,
            origin_device=loser.origin_device,
            winner_hlc=winner,
            text=loser_text,
            metadata=loser.metadata or {},
            source=loser.source,
        ))

    def keep_conflict(self, session: WriteSession, conflict: Conflict) -> bool:
        """Keep ``conflict`` unless a record with its key and a winner at least as new is
        kept already; True if it was written. Idempotent."""
        key = session.prefix + conflict.doc_id.encode() + b"\0" + conflict.hlc.pack()
        existing = session.txn.get(key, db=self._dbs.conflicts)
        if existing is not None:
            kept = self._decode_conflict(session.collection, key[len(session.prefix):],
                                         bytes(existing))
            if kept.winner_hlc >= conflict.winner_hlc:
                return False
        flags = (
            (_CONFLICT_DELETE if conflict.op is ChangeOp.DELETE else 0)
            | (_CONFLICT_HAS_TEXT if conflict.text is not None else 0)
            | (_CONFLICT_HAS_SOURCE if conflict.source is not None else 0)
            | _CONFLICT_HAS_SEQ
        )
        out = bytearray([flags])
        put_varint(out, session.next_seq())
        put_bytes(out, conflict.origin_device.encode())
        put_bytes(out, conflict.winner_hlc.pack())
        put_bytes(out, compact_json(conflict.metadata or {}))
        if conflict.source is not None:
            put_bytes(out, conflict.source.encode())
        if conflict.text is not None:
            out += zstandard.ZstdCompressor().compress(conflict.text.encode("utf-8"))
        session.txn.put(key, bytes(out), db=self._dbs.conflicts)
        return True

    def _decode_conflict(
        self, collection: CollectionRecord, suffix: bytes, value: bytes
    ) -> Conflict:
        key = collection.prefix + suffix
        doc_id, _, stamp = suffix.partition(b"\0")
        reader = RecordReader(value, what="conflict", key=key)
        flags = reader.byte()
        seq = reader.varint() if flags & _CONFLICT_HAS_SEQ else 0
        origin = reader.text()
        try:
            hlc, winner = HLCTimestamp.unpack(stamp), HLCTimestamp.unpack(reader.bytes())
            metadata = json.loads(reader.bytes())
            source = reader.text() if flags & _CONFLICT_HAS_SOURCE else None
            text = None
            if flags & _CONFLICT_HAS_TEXT:
                text = zstandard.ZstdDecompressor().decompress(reader.rest()).decode("utf-8")
        except (InvalidArgument, ValueError, zstandard.ZstdError) as error:
            raise reader.corrupt(error) from error
        return Conflict(
            collection=collection.name,
            doc_id=doc_id.decode(),
            op=ChangeOp.DELETE if flags & _CONFLICT_DELETE else ChangeOp.UPSERT,
            hlc=hlc,
            origin_device=origin,
            winner_hlc=winner,
            text=text,
            metadata=metadata,
            source=source,
            seq=seq,
        )

    def conflicts_since(
        self, txn: lmdb.Transaction, collection: CollectionRecord, seq: int
    ) -> list[Conflict]:
        """The collection's conflict records kept after ``seq``, by the seq they were kept at
        (a scan of the collection's records: they are few)."""
        return sorted((c for c in self.conflicts(txn, collection) if c.seq > seq),
                      key=lambda c: c.seq)

    # ------------------------------------------------------------------------ merging

    def apply_remote(
        self, session: WriteSession, writer: DocumentWriter, changes: Sequence[RemoteChange]
    ) -> list[bool]:
        """Merge ``changes`` by last-writer-wins (see the module docstring); True per applied."""
        txn, prefix = session.txn, session.prefix
        seen = self.watermarks(txn, prefix)
        applied = []
        for change in changes:
            already_seen = change.origin_seq <= seen.get(change.origin_device, 0)
            seen[change.origin_device] = max(seen.get(change.origin_device, 0),
                                             change.origin_seq)
            session.merge(change.hlc, change.origin_device, change.origin_seq)
            old = writer.current(change.doc_id)
            if old is not None and old.hlc >= change.hlc:
                if not already_seen and old.hlc != change.hlc and (
                    old.origin_device != change.origin_device
                ) and not _same_version(old, _text_of(writer, old), change):
                    text = change.text if change.op is ChangeOp.UPSERT else None
                    self._keep_conflict(session, change, text, old.hlc)
                applied.append(False)
                continue
            origin = (change.origin_device, change.origin_seq)
            doc = check_document(change.document()) if change.op is ChangeOp.UPSERT else None
            if (
                old is not None
                and not old.deleted
                and old.origin_device != change.origin_device
                and old.seq > self.peer_cursor(txn, prefix, change.origin_device)
            ):
                old_text = writer.current_text(old)
                if not _same_version(old, old_text, change):
                    self._keep_conflict(session, old, old_text, change.hlc)
            if doc is None:
                writer.put_tombstone(change.doc_id, hlc=change.hlc, origin=origin)
            else:
                writer.put_live(doc, hlc=change.hlc, origin=origin)
            applied.append(True)
        return applied


def _text_of(writer: DocumentWriter, record: DocumentRecord) -> str | None:
    """A record's text; None for a tombstone."""
    return None if record.deleted else writer.current_text(record)


def _same_version(old: DocumentRecord, old_text: str | None, change: RemoteChange) -> bool:
    """Whether ``change`` says what the local version ``old`` (text ``old_text``) says: both
    deletes, or the same text, metadata and source. Devices that made the same change lost
    nothing."""
    if old.deleted or change.op is ChangeOp.DELETE:
        return old.deleted and change.op is ChangeOp.DELETE
    return (change.text, change.metadata or {}, change.source) == (
        old_text, old.metadata or {}, old.source)
