"""Where replication stands with each peer, and the conflicts it kept: the ``SyncProgress``
interface and its file implementation.

The sync engine declares what it needs (``SyncProgress``) and gets it from ``FileProgress``
for now: ``DATA_DIR/sync/progress.json`` (cursors and acks, atomic 0600 writes) and
``DATA_DIR/sync/conflicts.jsonl`` (append-only, fsynced). The store's change log is to take
this over (durable per-peer cursors and conflict records beside the log, one transaction with
the applied changes); swapping implementations changes nothing above this interface.

Cursors are written after the batch they cover is committed to the store, so a crash between
the two re-applies at most one batch, which is harmless (applying a change twice is a no-op).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from meshdex.node.paths import write_private_file
from meshdex.sync.errors import TrustStoreCorrupt
from meshdex.sync.files import locked, sync_dir

PROGRESS_FILE_NAME = "progress.json"
CONFLICTS_FILE_NAME = "conflicts.jsonl"


@dataclass(frozen=True, kw_only=True)
class Conflict:
    """A version of a document that lost last-writer-wins to a concurrent one, kept whole."""

    collection: str
    doc_id: str
    losing_hlc: str
    winning_hlc: str
    origin_device: str
    deleted: bool
    text: str | None
    metadata: dict[str, Any]
    source: str | None
    recorded_at: float

    @property
    def key(self) -> tuple[str, str, str]:
        return self.collection, self.doc_id, self.losing_hlc


class SyncProgress(Protocol):
    """Durable per-peer replication state. Implementations are thread-safe."""

    def get_cursor(self, peer: str, collection: str) -> int:
        """How far this device has applied ``peer``'s change log in ``collection``; 0 if never."""

    def set_cursor(self, peer: str, collection: str, seq: int) -> None:
        """Durable when it returns; a lower ``seq`` than the stored one is ignored."""

    def get_ack(self, peer: str, collection: str) -> int:
        """How far ``peer`` acknowledged this device's log in ``collection``; 0 if never."""

    def set_ack(self, peer: str, collection: str, seq: int) -> None:
        """Durable when it returns; a lower ``seq`` is ignored."""

    def add_conflicts(self, conflicts: list[Conflict]) -> None:
        """Keep conflict records; idempotent (a record already kept, by ``key``, is skipped)."""

    def all_conflicts(self, collection: str | None = None) -> list[Conflict]:
        """Kept conflicts, oldest first, optionally of one collection."""


class FileProgress:
    """``SyncProgress`` in two files of ``DATA_DIR/sync``."""

    def __init__(self, data_dir: Path) -> None:
        folder = sync_dir(data_dir)
        self.path = folder / PROGRESS_FILE_NAME
        self.conflicts_path = folder / CONFLICTS_FILE_NAME
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, int]]:
        if not self.path.exists():
            return {"cursors": {}, "acks": {}}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise TrustStoreCorrupt(f"cannot read sync progress: {error}", path=self.path) from None

    def _get(self, table: str, peer: str, collection: str) -> int:
        with self._lock:
            return self._load()[table].get(f"{peer}/{collection}", 0)

    def _set(self, table: str, peer: str, collection: str, seq: int) -> None:
        with self._lock, locked(self.path):
            data = self._load()
            key = f"{peer}/{collection}"
            if seq <= data[table].get(key, 0):
                return
            data[table][key] = seq
            write_private_file(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    def get_cursor(self, peer: str, collection: str) -> int:
        return self._get("cursors", peer, collection)

    def set_cursor(self, peer: str, collection: str, seq: int) -> None:
        self._set("cursors", peer, collection, seq)

    def get_ack(self, peer: str, collection: str) -> int:
        return self._get("acks", peer, collection)

    def set_ack(self, peer: str, collection: str, seq: int) -> None:
        self._set("acks", peer, collection, seq)

    def add_conflicts(self, conflicts: list[Conflict]) -> None:
        if not conflicts:
            return
        with self._lock, locked(self.conflicts_path):
            known = {c.key for c in self._read_conflicts()}
            fresh = [c for c in conflicts if c.key not in known]
            if not fresh:
                return
            fd = os.open(self.conflicts_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, "".join(json.dumps(asdict(c), sort_keys=True) + "\n"
                                     for c in fresh).encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_conflicts(self) -> list[Conflict]:
        if not self.conflicts_path.exists():
            return []
        records = []
        for line in self.conflicts_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(Conflict(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash mid-append
        return records

    def all_conflicts(self, collection: str | None = None) -> list[Conflict]:
        with self._lock:
            return [c for c in self._read_conflicts()
                    if collection is None or c.collection == collection]
