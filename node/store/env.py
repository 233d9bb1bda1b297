"""The LMDB environment of one data directory: opening, transactions, map growth, closing,
the sub-databases, and the one prefix-scan helper every part uses.

Every write is one transaction committed with fsync (LMDB's default durability: no
``writemap``, ``nosync`` or ``nometasync``), so a write acknowledged to a caller survives
kill -9. A second writing process is refused by ``WriterLock``; readers open read-only.
Within a process writes are serialised by ``write_lock`` so that compaction can copy the
environment knowing no write is under way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import lmdb
from meshdex.index.errors import FailedPrecondition
from meshdex.node.paths import PRIVATE_FILE_MODE

logger = logging.getLogger(__name__)

INITIAL_MAP_SIZE_BYTES = 256 * 1024 * 1024
MAX_MAP_SIZE_BYTES = 1 << 40
MAX_SUB_DATABASES = 24
MAX_READERS = 256
DATA_FILE_NAME = "data.mdb"
STORE_FORMAT_VERSION = 4

# keys of ``meta``
FORMAT_VERSION_KEY = b"format_version"
DEVICE_ID_KEY = b"device_id"
LAST_SEQ_KEY = b"last_seq"
CLOCK_KEY = b"hlc"

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Databases:
    """Handles of the named sub-databases (layout in ``meshdex.node.store``'s docstring)."""

    meta: Any
    collections: Any
    collection_names: Any
    stats: Any
    devices: Any
    documents: Any
    blocks: Any
    block_stats: Any
    dictionaries: Any
    passages: Any
    changes: Any
    watermarks: Any
    peer_cursors: Any
    conflicts: Any

    @classmethod
    def open(cls, env: lmdb.Environment, *, create: bool) -> Databases:
        return cls(
            **{f.name: env.open_db(f.name.encode(), create=create) for f in fields(cls)}
        )

    def all(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def open_lmdb(store_dir: Path, *, readonly: bool) -> lmdb.Environment:
    """``lmdb.open`` with the store's options; its failures become errors we own."""
    options: dict[str, Any] = {"max_dbs": MAX_SUB_DATABASES, "max_readers": MAX_READERS}
    if readonly:
        options["readonly"] = True
    else:
        options.update(
            map_size=INITIAL_MAP_SIZE_BYTES, sync=True, metasync=True, writemap=False,
            mode=PRIVATE_FILE_MODE,
        )
    try:
        return lmdb.open(str(store_dir), **options)
    except lmdb.Error as error:
        raise FailedPrecondition(
            f"cannot open the LMDB store in {store_dir}: {error}", op="open", path=store_dir
        ) from error


class Environment:
    """One open LMDB environment and its sub-databases; swapped by compaction."""

    def __init__(self, *, store_dir: Path, readonly: bool, create: bool) -> None:
        self.store_dir = store_dir
        self.readonly = readonly
        self.lmdb = open_lmdb(store_dir, readonly=readonly)
        self.dbs = Databases.open(self.lmdb, create=create)
        self.write_lock = threading.RLock()

    def begin_read(self) -> lmdb.Transaction:
        """A read-only snapshot transaction."""
        while True:
            try:
                return self.lmdb.begin()
            except lmdb.MapResizedError:  # the writer process grew the map; adopt the new size
                self.lmdb.set_mapsize(0)

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self.begin_read() as txn:
            return fn(txn)

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one durable write transaction, growing the map if it fills."""
        if self.readonly:
            data_dir = self.store_dir.parent
            raise FailedPrecondition(f"the store in {data_dir} is open read-only", path=data_dir)
        with self.write_lock:
            while True:
                try:
                    with self.lmdb.begin(write=True) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    self._grow()

    def _grow(self) -> None:
        size = self.lmdb.info()["map_size"]
        if size >= MAX_MAP_SIZE_BYTES:
            raise FailedPrecondition(f"the store in {self.store_dir.parent} reached {size} bytes")
        logger.info("growing LMDB map from %d to %d bytes", size, size * 2)
        self.lmdb.set_mapsize(size * 2)

    def used_and_file_pages(self) -> tuple[int, int]:
        """(pages holding data, pages in the file): the difference is free pages."""
        stat = self.lmdb.stat()
        used = 2 + stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
        with self.begin_read() as txn:
            for db in self.dbs.all().values():
                sub = txn.stat(db)
                used += sub["branch_pages"] + sub["leaf_pages"] + sub["overflow_pages"]
        return used, self.lmdb.info()["last_pgno"] + 1

    @property
    def page_bytes(self) -> int:
        return self.lmdb.stat()["psize"]

    def copy_dense(self, target_dir: Path) -> None:
        """Write every sub-database, in key order with LMDB's append mode, into a new
        environment in ``target_dir``, then fsync it.

        Unlike ``mdb_env_copy``'s compaction, which copies pages as they are, this packs every
        page full: deletes and random inserts leave B-tree pages a half to two thirds full,
        and LMDB merges them only below a quarter."""
        target = lmdb.open(
            str(target_dir), map_size=self.lmdb.info()["map_size"], max_dbs=MAX_SUB_DATABASES,
            max_readers=MAX_READERS, sync=True, metasync=True, writemap=False,
            mode=PRIVATE_FILE_MODE,
        )
        try:
            with self.begin_read() as source, target.begin(write=True) as txn:
                for name, db in self.dbs.all().items():
                    copy = target.open_db(name.encode(), txn=txn, create=True)
                    txn.cursor(db=copy).putmulti(source.cursor(db=db).iternext(), append=True)
            target.sync(True)
        finally:
            target.close()

    def close(self) -> None:
        self.lmdb.close()


def scan_prefix(
    txn: lmdb.Transaction, db: Any, prefix: bytes, *, start: bytes = b""
) -> Iterator[tuple[bytes, bytes]]:
    """(key without ``prefix``, value) for every key starting with ``prefix``, in key order,
    from ``prefix + start`` on."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix + start):
        return
    size = len(prefix)
    for key, value in cursor.iternext():
        key = bytes(key)
        if not key.startswith(prefix):
            return
        yield key[size:], bytes(value)


def first_with_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> tuple[bytes, bytes] | None:
    """The first (key without ``prefix``, value) under ``prefix``, or None."""
    return next(scan_prefix(txn, db, prefix), None)


def delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> None:
    """Delete every key that starts with ``prefix``."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix):
        return
    while bytes(cursor.key()).startswith(prefix):
        if not cursor.delete():
            break


def get_u64(txn: lmdb.Transaction, db: Any, key: bytes) -> int:
    """A stored big-endian uint64, 0 when absent."""
    raw = txn.get(key, db=db)
    return int.from_bytes(raw, "big") if raw is not None else 0
