"""The highest index generation each collection ever had on this device.

A build or import numbers its bundle one past this record and the installed bundle, so
generations never repeat or go down: not after an import of a bundle built elsewhere with a
lower number, and not after a damaged bundle was rebuilt from the documents (its own number
unreadable). Kept in ``DATA_DIR/indexes/generations.json``, replaced atomically; callers hold the
collection's build lock.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from meshdex.node.paths import write_private_file

logger = logging.getLogger(__name__)

GENERATIONS_FILE_NAME = "generations.json"


class GenerationRecord:
    """Read and raise the recorded generation of collections in one index directory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / GENERATIONS_FILE_NAME
        self._lock = threading.Lock()

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            logger.warning("%s is unreadable; generations continue from the bundles", self.path)
            return {}
        if not isinstance(data, dict):
            return {}
        return {name: value for name, value in data.items() if isinstance(value, int)}

    def highest(self, collection: str) -> int:
        """The highest generation recorded for ``collection`` (0 if none)."""
        with self._lock:
            return self._read().get(collection, 0)

    def record(self, collection: str, generation: int) -> None:
        """Note that ``collection`` now has ``generation`` (never lowers the record)."""
        with self._lock:
            records = self._read()
            if records.get(collection, 0) >= generation:
                return
            records[collection] = generation
            write_private_file(self.path, json.dumps(records, indent=1).encode("utf-8"))
