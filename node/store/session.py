"""Bookkeeping for one write transaction on one collection: sequence numbers, stamps, the
change-log entries, counters, origin watermarks, and the documents staged so far."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import lmdb
from meshdex.node.hlc import HLCTimestamp, HybridLogicalClock
from meshdex.node.store.codec import U32, U64
from meshdex.node.store.collections import CollectionRecord, Collections
from meshdex.node.store.devices import Devices
from meshdex.node.store.env import CLOCK_KEY, LAST_SEQ_KEY, Databases, get_u64


@dataclass(frozen=True, kw_only=True)
class SessionParts:
    """What every write session needs from the store."""

    dbs: Databases
    collections: Collections
    devices: Devices
    clock: HybridLogicalClock
    device_id: str


class WriteSession:
    """One write transaction's view of a collection. ``finish`` persists what it gathered."""

    def __init__(
        self, parts: SessionParts, txn: lmdb.Transaction, collection: CollectionRecord
    ) -> None:
        self.parts, self.txn, self.collection = parts, txn, collection
        self.prefix = collection.prefix
        self.seq = get_u64(txn, parts.dbs.meta, LAST_SEQ_KEY)
        self.stats = parts.collections.stats(txn, collection)
        self.watermarks: dict[str, int] = {}
        self.released: defaultdict[int, int] = defaultdict(int)  # block -> text bytes freed
        self.newest: HLCTimestamp | None = None  # newest stamp written in this collection
        self.dirty = False

    def stamp(self) -> HLCTimestamp:
        """A fresh local stamp for a local write."""
        self.dirty = True
        return self.parts.clock.now()

    def merge(self, remote: HLCTimestamp, origin_device: str, origin_seq: int) -> None:
        """Move the clock past a received stamp and note how far the origin has been seen."""
        self.dirty = True
        self.parts.clock.update(remote)
        self.watermarks[origin_device] = max(self.watermarks.get(origin_device, 0), origin_seq)

    def log(self, doc_id: str, hlc: HLCTimestamp, *, superseded_seq: int) -> int:
        """Append the change-log entry of a write and drop the entry it supersedes.

        A document has at most one entry: its latest write. Whoever reads the log reads the
        document's current record for the rest (stamp, origin, text)."""
        self.dirty = True
        dbs = self.parts.dbs
        if superseded_seq:
            self.txn.delete(U64.pack(superseded_seq), db=dbs.changes)
        self.seq += 1
        self.txn.put(U64.pack(self.seq), self.prefix + doc_id.encode(), db=dbs.changes)
        self.newest = hlc if self.newest is None else max(self.newest, hlc)
        return self.seq

    def next_seq(self) -> int:
        """The next seq for a log position that is no document write (a conflict record
        kept), so that peers resuming after their cursor are sent it."""
        self.dirty = True
        self.seq += 1
        return self.seq

    def local_origin(self) -> tuple[str, int]:
        """The origin of a local write logged just now: this device at this seq."""
        self.watermarks[self.parts.device_id] = self.seq
        return self.parts.device_id, self.seq

    def finish(self) -> None:
        """Persist seq, clock, counters and watermarks if anything changed."""
        if not self.dirty:
            return
        parts, txn = self.parts, self.txn
        txn.put(LAST_SEQ_KEY, U64.pack(self.seq), db=parts.dbs.meta)
        txn.put(CLOCK_KEY, parts.clock.peek().pack(), db=parts.dbs.meta)
        if self.newest is not None and (
            self.stats.max_hlc is None or self.stats.max_hlc < self.newest
        ):
            self.stats.max_hlc = self.newest
        parts.collections.put_stats(txn, self.collection, self.stats)
        parts.collections.touch(txn, self.collection)
        for device, seq in self.watermarks.items():
            key = self.prefix + U32.pack(parts.devices.index(txn, device))
            if seq > get_u64(txn, parts.dbs.watermarks, key):
                txn.put(key, U64.pack(seq), db=parts.dbs.watermarks)
