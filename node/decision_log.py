"""The record of what this device decided about its indexes, shown by ``meshdex status``.

Every build (built / delta / unchanged, and why) and every bundle import (use, drop cache,
apply delta, rebuild, refuse, and why) appends one JSON line to
``DATA_DIR/indexes/decisions.jsonl``. The file is append-only and fsynced per entry; it is
trimmed to the newest ``KEEP_ENTRIES`` when it grows past twice that. A torn last line (a crash
mid-append) is skipped when reading, never fatal. A decision identical to the collection's
previous one (same trigger, decision, reasons and generation: a sync session every interval
finding the same bundle) is not appended again, so the log keeps what changed, not the clock.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from meshdex.node.paths import PRIVATE_FILE_MODE, write_private_file

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "decisions.jsonl"
KEEP_ENTRIES = 200


@dataclass(frozen=True, kw_only=True)
class DecisionRecord:
    """One decision: when, about which collection, what triggered it, what and why."""

    at_ms: int
    collection: str
    trigger: str  # "build" | "import"
    decision: str  # e.g. "delta", "built", "use_drop_cache", "rebuild_locally", "refuse"
    reasons: tuple[str, ...]
    generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecisionRecord:
        return cls(
            at_ms=int(data["at_ms"]),
            collection=str(data["collection"]),
            trigger=str(data["trigger"]),
            decision=str(data["decision"]),
            reasons=tuple(str(reason) for reason in data.get("reasons", ())),
            generation=data.get("generation"),
        )


class DecisionLog:
    """Append and read decisions of one data directory; safe across threads of one process
    (the store's writer lock keeps other processes from writing at the same time)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOG_FILE_NAME
        self._lock = threading.Lock()

    def append(
        self,
        *,
        collection: str,
        trigger: str,
        decision: str,
        reasons: Sequence[str],
        generation: int | None = None,
    ) -> DecisionRecord:
        record = DecisionRecord(
            at_ms=int(time.time() * 1000), collection=collection, trigger=trigger,
            decision=decision, reasons=tuple(reasons), generation=generation,
        )
        line = json.dumps(record.to_dict(), ensure_ascii=False) + "\n"
        with self._lock:
            records = self._read()  # once: for the previous decision and for the trim
            previous = next((r for r in reversed(records) if r.collection == collection), None)
            if previous is not None and replace(previous, at_ms=record.at_ms) == record:
                logger.debug("%s %s: %s again", trigger, collection, decision)
                return previous
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self._trim([*records, record])
        logger.info("%s %s: %s (%s)", trigger, collection, decision, "; ".join(reasons))
        return record

    def recent(self, limit: int = 20, *, collection: str | None = None) -> list[DecisionRecord]:
        """The newest ``limit`` decisions, newest first (optionally for one collection)."""
        records = [r for r in self._read() if collection is None or r.collection == collection]
        return records[::-1][:limit]

    def _read(self) -> list[DecisionRecord]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(DecisionRecord.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                logger.warning("%s:%d: unreadable decision entry skipped", self.path, number)
        return records

    def _trim(self, records: list[DecisionRecord]) -> None:
        """Rewrite the file with the newest ``KEEP_ENTRIES`` of ``records`` (what it now
        holds) once they pass twice that."""
        if len(records) <= 2 * KEEP_ENTRIES:
            return
        write_private_file(self.path, "".join(
            json.dumps(r.to_dict(), ensure_ascii=False) + "\n"
            for r in records[-KEEP_ENTRIES:]).encode("utf-8"))
