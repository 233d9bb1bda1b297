"""Documents: one compact binary record each, the text stored once (in a text block), its
passages as spans of that text.

``documents``  collection u32 + document id -> flags byte, then varints and packed fields:
               seq of its change-log entry; stamp (ms, counter, device index); origin
               device index and seq unless they equal the stamp's device and the seq; source
               and compact-JSON metadata when present; for a live document its text's block
               and slot and its passage spans, character offsets into
               ``normalize_newlines(text)``, fixed width so a read decodes them in one call:
               u16 pairs (start minus the previous start, length) when every one fits, as
               chunking's passages of a few hundred characters do, else u32 (start, end).

A tombstone is a record with the deleted flag and no text. Chunking is deterministic, so the
spans are the same on every device; a passage's key is the SHA-256 of its span's text.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import lmdb
from meshdex.index.chunking import (
    ChunkingParams,
    chunk_spans,
    normalize_newlines,
    passage_key,
    passage_label,
)
from meshdex.index.errors import InvalidArgument
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import Document, DocumentInfo, DocumentInput
from meshdex.node.store.blocks import BlockCache, TextBlocks, TextRef
from meshdex.node.store.codec import RecordReader, put_bytes, put_stamp, put_varint
from meshdex.node.store.collections import CollectionStats, compact_json
from meshdex.node.store.devices import Devices
from meshdex.node.store.env import Databases, delete_prefix, scan_prefix
from meshdex.node.store.passages import PassageIndex
from meshdex.node.store.session import WriteSession

_DELETED = 0x01
_HAS_SOURCE = 0x02
_HAS_METADATA = 0x04
_OWN_ORIGIN = 0x08  # origin is the stamping device at this record's own seq: not repeated
_SHORT_SPANS = 0x10  # spans as u16 (start step, length) pairs, not u32 (start, end)
_KNOWN_FLAGS = _DELETED | _HAS_SOURCE | _HAS_METADATA | _OWN_ORIGIN | _SHORT_SPANS
_U16_LIMIT = 1 << 16

Span = tuple[int, int]


def content_hash(text: str) -> str:
    """Hex SHA-256 of a document's UTF-8 text: equal hashes mean an unchanged document."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class DocumentRecord:
    """A document as stored: live (``text`` set) or a tombstone (``deleted``)."""

    doc_id: str
    seq: int
    hlc: HLCTimestamp
    origin_device: str
    origin_seq: int
    deleted: bool
    source: str | None
    metadata: dict[str, Any]
    text: TextRef | None
    spans: tuple[Span, ...]

    def encode(self, txn: lmdb.Transaction, devices: Devices) -> bytes:
        own = self.origin_device == self.hlc.device_id and self.origin_seq == self.seq
        short = _short_spans(self.spans) if self.text is not None else None
        flags = (
            (_DELETED if self.deleted else 0)
            | (_HAS_SOURCE if self.source is not None else 0)
            | (_HAS_METADATA if self.metadata else 0)
            | (_OWN_ORIGIN if own else 0)
            | (_SHORT_SPANS if short is not None else 0)
        )
        out = bytearray([flags])
        put_varint(out, self.seq)
        put_stamp(out, self.hlc, devices.index(txn, self.hlc.device_id))
        if not own:
            put_varint(out, devices.index(txn, self.origin_device))
            put_varint(out, self.origin_seq)
        if self.source is not None:
            put_bytes(out, self.source.encode())
        if self.metadata:
            put_bytes(out, compact_json(self.metadata))
        if self.text is not None:
            put_varint(out, self.text.block)
            put_varint(out, self.text.slot)
            put_varint(out, len(self.spans))
            if short is not None:
                out += struct.pack(f">{len(short)}H", *short)
            else:
                out += struct.pack(f">{2 * len(self.spans)}I", *itertools.chain(*self.spans))
        return bytes(out)

    @classmethod
    def decode(
        cls, key: bytes, data: bytes, *, doc_id: str, txn: lmdb.Transaction, devices: Devices
    ) -> DocumentRecord:
        reader = RecordReader(data, what="document", key=key)
        head = _Head.decode(reader, txn=txn, devices=devices)
        text: TextRef | None = None
        spans: tuple[Span, ...] = ()
        if head.deleted:
            reader.end()
        else:
            text, spans = _text_and_spans(reader, head.flags)
        return cls(
            doc_id=doc_id,
            seq=head.seq,
            hlc=head.hlc,
            origin_device=head.origin_device,
            origin_seq=head.origin_seq,
            deleted=head.deleted,
            source=head.source,
            metadata=head.metadata,
            text=text,
            spans=spans,
        )


@dataclass(frozen=True, kw_only=True)
class _Head:
    """A document record's fields before its text and spans: all a search's filter and hit
    need, decoded without the spans (a whole file's document has hundreds)."""

    flags: int
    seq: int
    hlc: HLCTimestamp
    origin_device: str
    origin_seq: int
    source: str | None
    metadata: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return bool(self.flags & _DELETED)

    @classmethod
    def decode(cls, reader: RecordReader, *, txn: lmdb.Transaction, devices: Devices) -> _Head:
        flags = reader.byte()
        if flags & ~_KNOWN_FLAGS:
            raise reader.corrupt(f"unknown flags {flags:#x}")
        seq = reader.varint()
        physical, logical, device_index = reader.stamp()
        try:
            hlc = HLCTimestamp(
                physical_ms=physical, logical=logical, device_id=devices.name(txn, device_index)
            )
        except InvalidArgument as error:
            raise reader.corrupt(error) from error
        if flags & _OWN_ORIGIN:
            origin_device, origin_seq = hlc.device_id, seq
        else:
            origin_device, origin_seq = devices.name(txn, reader.varint()), reader.varint()
        source = reader.text() if flags & _HAS_SOURCE else None
        metadata: dict[str, Any] = {}
        if flags & _HAS_METADATA:
            try:
                metadata = json.loads(reader.bytes())
            except ValueError as error:
                raise reader.corrupt(error) from error
        return cls(flags=flags, seq=seq, hlc=hlc, origin_device=origin_device,
                   origin_seq=origin_seq, source=source, metadata=metadata)


def _text_and_spans(reader: RecordReader, flags: int) -> tuple[TextRef, tuple[Span, ...]]:
    """The rest of a live record after its head: where its text lies and its spans."""
    text = TextRef(reader.varint(), reader.varint())
    count = reader.varint()
    if flags & _SHORT_SPANS:
        flat = struct.unpack(f">{2 * count}H", reader.fixed(4 * count))
        starts = list(itertools.accumulate(flat[::2]))
        ends = map(operator.add, starts, flat[1::2])
        spans = tuple(zip(starts, ends, strict=True))
    else:
        flat = struct.unpack(f">{2 * count}I", reader.fixed(8 * count))
        spans = tuple(zip(flat[::2], flat[1::2], strict=True))
    reader.end()
    return text, spans


class LiveDocument:
    """A live document's record decoded up to its text: its ``info``, what a search checks
    of every candidate. ``text_and_spans`` decodes the rest once, for the few whose passages
    the search reads (a whole file's record holds hundreds of spans)."""

    def __init__(self, info: DocumentInfo, rest: RecordReader, flags: int) -> None:
        self.info = info
        self._rest, self._flags = rest, flags
        self._text_and_spans: tuple[TextRef, tuple[Span, ...]] | None = None

    def text_and_spans(self) -> tuple[TextRef, tuple[Span, ...]]:
        if self._text_and_spans is None:
            self._text_and_spans = _text_and_spans(self._rest, self._flags)
        return self._text_and_spans


def _short_spans(spans: tuple[Span, ...]) -> list[int] | None:
    """The spans as flat (start minus the previous start, length) pairs if every one fits in
    u16, else None."""
    flat, previous = [], 0
    for start, end in spans:
        step, length = start - previous, end - start
        if not (0 <= step < _U16_LIMIT and 0 <= length < _U16_LIMIT):
            return None
        flat += (step, length)
        previous = start
    return flat


def passage_texts_of(text: str, spans: tuple[Span, ...]) -> list[str]:
    normal = normalize_newlines(text)
    return [normal[start:end] for start, end in spans]


def _labels(text: str, spans: tuple[Span, ...]) -> list[int]:
    """The index labels of a document's passages, in document order."""
    return [passage_label(passage_key(t)) for t in passage_texts_of(text, spans)]


class Documents:
    """Reads document records and their texts inside the caller's transaction."""

    def __init__(
        self, *, documents_db: Any, devices: Devices, blocks: TextBlocks, passages: PassageIndex
    ) -> None:
        self._db = documents_db
        self.devices, self.blocks, self.passages = devices, blocks, passages

    @classmethod
    def over(cls, dbs: Databases, devices: Devices) -> Documents:
        """Documents with their text blocks and passage index, on one environment."""
        return cls(
            documents_db=dbs.documents,
            devices=devices,
            blocks=TextBlocks(blocks_db=dbs.blocks, stats_db=dbs.block_stats,
                              dictionaries_db=dbs.dictionaries),
            passages=PassageIndex(dbs.passages, dbs.changes),
        )

    def record(self, txn: lmdb.Transaction, prefix: bytes, doc_id: str) -> DocumentRecord | None:
        key = prefix + doc_id.encode()
        raw = txn.get(key, db=self._db)
        if raw is None:
            return None
        return DocumentRecord.decode(key, raw, doc_id=doc_id, txn=txn, devices=self.devices)

    def live(self, txn: lmdb.Transaction, prefix: bytes, doc_id: str) -> LiveDocument | None:
        """The document decoded up to its text, if it is live (what a search checks per
        candidate)."""
        key = prefix + doc_id.encode()
        raw = txn.get(key, db=self._db)
        if raw is None:
            return None
        reader = RecordReader(raw, what="document", key=key)
        head = _Head.decode(reader, txn=txn, devices=self.devices)
        if head.deleted:
            return None
        return LiveDocument(DocumentInfo(id=doc_id, source=head.source, metadata=head.metadata,
                                         hlc=head.hlc), reader, head.flags)

    def records(self, txn: lmdb.Transaction, prefix: bytes,
                id_prefix: str = "") -> Iterator[DocumentRecord]:
        """Every record (live and tombstones) of the collection whose id starts with
        ``id_prefix``, sorted by id."""
        encoded = id_prefix.encode()
        for suffix, raw in scan_prefix(txn, self._db, prefix + encoded):
            yield DocumentRecord.decode(prefix + encoded + suffix, raw,
                                        doc_id=id_prefix + suffix.decode(), txn=txn,
                                        devices=self.devices)

    def live_ids_under(self, txn: lmdb.Transaction, prefix: bytes, id_prefix: str) -> list[str]:
        """Ids of the live documents of the collection whose id starts with ``id_prefix``."""
        return [record.doc_id for record in self.records(txn, prefix, id_prefix)
                if not record.deleted]

    def put(self, txn: lmdb.Transaction, prefix: bytes, record: DocumentRecord) -> None:
        txn.put(prefix + record.doc_id.encode(), record.encode(txn, self.devices), db=self._db)

    def refers_to(
        self, txn: lmdb.Transaction, prefix: bytes
    ) -> Callable[[str, TextRef], bool]:
        """Whether a document's record points at a text slot (the blocks' ``is_live``)."""

        def is_live(doc_id: str, ref: TextRef) -> bool:
            record = self.record(txn, prefix, doc_id)
            return record is not None and record.text == ref

        return is_live

    def mover(self, txn: lmdb.Transaction, prefix: bytes) -> Callable[[str, TextRef], None]:
        """Points a document's record at its text's new slot (the blocks' ``moved``)."""

        def moved(doc_id: str, ref: TextRef) -> None:
            record = self.record(txn, prefix, doc_id)
            if record is not None:
                self.put(txn, prefix, replace(record, text=ref))

        return moved

    def compact_texts(
        self, txn: lmdb.Transaction, prefix: bytes, stats: CollectionStats, *,
        before_block: int,
    ) -> bool:
        """Rewrite some of the collection's wasteful text blocks numbered below
        ``before_block`` (``TextBlocks.compact``); True once none is left."""
        return self.blocks.compact(txn, prefix, stats, is_live=self.refers_to(txn, prefix),
                                   moved=self.mover(txn, prefix), before_block=before_block)

    def delete_all(self, txn: lmdb.Transaction, prefix: bytes) -> None:
        delete_prefix(txn, self._db, prefix)

    def text(
        self,
        txn: lmdb.Transaction,
        prefix: bytes,
        record: DocumentRecord,
        cache: BlockCache | None = None,
    ) -> str:
        """The text of a live record ("" for a tombstone)."""
        if record.text is None:
            return ""
        return self.blocks.text(txn, prefix, record.text, cache)

    def document(
        self,
        txn: lmdb.Transaction,
        collection: str,
        prefix: bytes,
        record: DocumentRecord,
        cache: BlockCache | None = None,
    ) -> Document:
        text = self.text(txn, prefix, record, cache)
        return Document(
            collection=collection,
            id=record.doc_id,
            text=text,
            metadata=record.metadata,
            source=record.source,
            content_hash=content_hash(text),
            hlc=record.hlc,
            passage_keys=tuple(passage_key(t) for t in passage_texts_of(text, record.spans)),
        )


@dataclass
class _Staged:
    """A record written in this transaction; ``pending`` is its text until it has a block."""

    record: DocumentRecord
    text: str | None  # the live text (None for a tombstone)
    pending: bytes | None


class DocumentWriter:
    """Writes documents within one write session. Texts are gathered and stored in blocks
    by ``flush``, once per transaction, so a batch compresses together."""

    def __init__(
        self, documents: Documents, session: WriteSession, chunking: ChunkingParams
    ) -> None:
        self.documents, self.session, self.chunking = documents, session, chunking
        self._staged: dict[str, _Staged] = {}
        self._cache = BlockCache()

    def current(self, doc_id: str) -> DocumentRecord | None:
        """The document's record as this transaction sees it (staged writes first)."""
        staged = self._staged.get(doc_id)
        if staged is not None:
            return staged.record
        return self.documents.record(self.session.txn, self.session.prefix, doc_id)

    def current_text(self, record: DocumentRecord) -> str:
        staged = self._staged.get(record.doc_id)
        if staged is not None and staged.record is record:
            return staged.text or ""
        return self.documents.text(self.session.txn, self.session.prefix, record, self._cache)

    def unchanged(self, doc: DocumentInput) -> bool:
        """True if ``doc`` equals the live document (text, metadata and source)."""
        old = self.current(doc.id)
        return (
            old is not None
            and not old.deleted
            and old.metadata == doc.metadata
            and old.source == doc.source
            and self.current_text(old) == doc.text
        )

    def put_live(
        self, doc: DocumentInput, *, hlc: HLCTimestamp, origin: tuple[str, int] | None = None
    ) -> str:
        """Write a live document over whatever was there; returns its text's content hash."""
        session = self.session
        old = self.current(doc.id)
        live = old is not None and not old.deleted
        old_text = self.current_text(old) if live else None
        seq = session.log(doc.id, hlc, superseded_seq=old.seq if old else 0)
        passages = self.documents.passages
        if live and old_text == doc.text:
            text_ref, spans = old.text, old.spans
            pending = self._staged[doc.id].pending if doc.id in self._staged else None
            passages.move(session.txn, session.prefix, _labels(old_text, spans), old.seq, seq)
        else:
            if live:
                self._drop_text(old, old_text)
            normal = normalize_newlines(doc.text)
            spans = tuple(chunk_spans(normal, self.chunking))
            passages.link(session.txn, session.prefix, session.stats, seq,
                          _labels(doc.text, spans))
            text_ref, pending = None, doc.text.encode("utf-8")
        origin_device, origin_seq = origin or session.local_origin()
        record = DocumentRecord(
            doc_id=doc.id,
            seq=seq,
            hlc=hlc,
            origin_device=origin_device,
            origin_seq=origin_seq,
            deleted=False,
            source=doc.source,
            metadata=doc.metadata,
            text=text_ref,
            spans=spans,
        )
        self._staged[doc.id] = _Staged(record=record, text=doc.text, pending=pending)
        if not live:
            session.stats.documents += 1
            if old is not None:
                session.stats.tombstones -= 1
        return content_hash(doc.text)

    def put_tombstone(
        self, doc_id: str, *, hlc: HLCTimestamp, origin: tuple[str, int] | None = None
    ) -> None:
        """Mark a document deleted (a tombstone is written even if it was never seen here)."""
        session = self.session
        old = self.current(doc_id)
        if old is not None and not old.deleted:
            self._drop_text(old, self.current_text(old))
            session.stats.documents -= 1
        if old is None or not old.deleted:
            session.stats.tombstones += 1
        seq = session.log(doc_id, hlc, superseded_seq=old.seq if old else 0)
        origin_device, origin_seq = origin or session.local_origin()
        record = DocumentRecord(
            doc_id=doc_id,
            seq=seq,
            hlc=hlc,
            origin_device=origin_device,
            origin_seq=origin_seq,
            deleted=True,
            source=old.source if old else None,
            metadata={},
            text=None,
            spans=(),
        )
        self._staged[doc_id] = _Staged(record=record, text=None, pending=None)

    def _drop_text(self, old: DocumentRecord, old_text: str) -> None:
        session = self.session
        self.documents.passages.unlink(session.txn, session.prefix, session.stats, old.seq,
                                       _labels(old_text, old.spans))
        if old.text is not None:
            session.released[old.text.block] += len(old_text.encode("utf-8"))

    def flush(self) -> None:
        """Store the gathered texts in blocks, write every staged record, free old texts."""
        session, documents = self.session, self.documents
        txn, prefix = session.txn, session.prefix
        waiting = [
            (doc_id, staged.pending)
            for doc_id, staged in self._staged.items()
            if staged.pending is not None
        ]
        refs = documents.blocks.append(txn, prefix, session.stats, waiting)
        for (doc_id, _), ref in zip(waiting, refs, strict=True):
            staged = self._staged[doc_id]
            staged.record = replace(staged.record, text=ref)
        for staged in self._staged.values():
            documents.put(txn, prefix, staged.record)
        self._staged.clear()
        documents.blocks.release(txn, prefix, dict(session.released),
                                 is_live=documents.refers_to(txn, prefix),
                                 moved=documents.mover(txn, prefix))
        session.released.clear()
