"""Device ids interned as small numbers, so records carry a 1-2 byte index, not a 32-character id.

``devices`` holds ``b"#" + u32 index -> device id`` and ``b"=" + device id -> u32 index``.
Indexes are local to this store (they never leave it: changes carry the full id) and never
reused; this device is index 0. ``b"!" + device id -> b""`` marks a store whose replication
state was forgotten (``meshdex peer forget``): sync refuses it from then on.
"""

from __future__ import annotations

from typing import Any

import lmdb
from meshdex.node.store.codec import U32, corrupt
from meshdex.node.store.env import (
    DEVICE_ID_KEY,
    FORMAT_VERSION_KEY,
    LAST_SEQ_KEY,
    STORE_FORMAT_VERSION,
    Databases,
    get_u64,
)

_BY_INDEX = b"#"
_BY_ID = b"="
_FORGOTTEN = b"!"
_NEXT_INDEX_KEY = b"next_device_index"


class Devices:
    def __init__(self, *, devices_db: Any, meta_db: Any) -> None:
        self._db, self._meta = devices_db, meta_db

    def lookup(self, txn: lmdb.Transaction, device_id: str) -> int | None:
        raw = txn.get(_BY_ID + device_id.encode(), db=self._db)
        return U32.unpack(raw)[0] if raw is not None else None

    def index(self, txn: lmdb.Transaction, device_id: str) -> int:
        """The device's index, assigning the next one if it is new (needs a write txn)."""
        known = self.lookup(txn, device_id)
        if known is not None:
            return known
        index = get_u64(txn, self._meta, _NEXT_INDEX_KEY)
        txn.put(_BY_ID + device_id.encode(), U32.pack(index), db=self._db)
        txn.put(_BY_INDEX + U32.pack(index), device_id.encode(), db=self._db)
        txn.put(_NEXT_INDEX_KEY, (index + 1).to_bytes(8, "big"), db=self._meta)
        return index

    def forget(self, txn: lmdb.Transaction, device_id: str) -> None:
        txn.put(_FORGOTTEN + device_id.encode(), b"", db=self._db)

    def is_forgotten(self, txn: lmdb.Transaction, device_id: str) -> bool:
        return txn.get(_FORGOTTEN + device_id.encode(), db=self._db) is not None

    def name(self, txn: lmdb.Transaction, index: int) -> str:
        key = _BY_INDEX + U32.pack(index)
        raw = txn.get(key, db=self._db)
        if raw is None:
            raise corrupt("device index", key, "no device has this index")
        return bytes(raw).decode()


def write_new_meta(txn: lmdb.Transaction, dbs: Databases, devices: Devices, device_id: str) -> None:
    """The ``meta`` of a new store: format version, this device's id (index 0), seq 0."""
    txn.put(FORMAT_VERSION_KEY, STORE_FORMAT_VERSION.to_bytes(8, "big"), db=dbs.meta)
    txn.put(DEVICE_ID_KEY, device_id.encode(), db=dbs.meta)
    txn.put(LAST_SEQ_KEY, (0).to_bytes(8, "big"), db=dbs.meta)
    devices.index(txn, device_id)
