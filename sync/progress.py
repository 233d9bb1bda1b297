"""The one-time import of the sync progress files earlier versions kept beside the store.

Cursors and conflict records now live in the store (``Store.apply_peer_batch`` applies a
batch, its conflicts and the new cursor in one transaction). Earlier versions wrote
``DATA_DIR/sync/progress.json`` (cursors by the peer's *device* id) and
``DATA_DIR/sync/conflicts.jsonl`` (conflict records). On the first open of a sync engine:

- conflict records are copied into the store (a record the store already holds, by
  document and losing stamp, is skipped), so no kept version is lost;
- the cursors are dropped, not copied: the store keys cursors by the peer's *store* id, which
  those files never knew. The cost is one session that starts from 0: the sender skips every
  change the receiver's watermarks say it holds, and applying a change twice is a no-op.

Then both files are deleted.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import ChangeOp, Conflict
from meshdex.node.store import Store
from meshdex.sync.files import sync_dir

logger = logging.getLogger(__name__)

LEGACY_PROGRESS_FILE_NAME = "progress.json"
LEGACY_CONFLICTS_FILE_NAME = "conflicts.jsonl"


def _legacy_conflicts(path: Path) -> list[Conflict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
            records.append(Conflict(
                collection=data["collection"], doc_id=data["doc_id"],
                op=ChangeOp.DELETE if data["deleted"] else ChangeOp.UPSERT,
                hlc=HLCTimestamp.from_str(data["losing_hlc"]),
                winner_hlc=HLCTimestamp.from_str(data["winning_hlc"]),
                origin_device=data["origin_device"], text=data["text"],
                metadata=data["metadata"] or {}, source=data["source"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash mid-append
    return records


def import_legacy_progress(data_dir: Path, store: Store) -> int:
    """Move the old files' conflict records into ``store`` and delete the files; how many
    records were new. Nothing to do (0) when there are no such files."""
    folder = sync_dir(data_dir)
    conflicts_path = folder / LEGACY_CONFLICTS_FILE_NAME
    imported = 0
    if conflicts_path.exists():
        by_collection: defaultdict[str, list[Conflict]] = defaultdict(list)
        for record in _legacy_conflicts(conflicts_path):
            by_collection[record.collection].append(record)
        for collection, records in by_collection.items():
            if store.has_collection(collection):
                imported += store.keep_conflicts(collection, records)
    for name in (LEGACY_CONFLICTS_FILE_NAME, LEGACY_PROGRESS_FILE_NAME):
        (folder / name).unlink(missing_ok=True)
        (folder / f".{name}.lock").unlink(missing_ok=True)  # ``sync.files.locked``'s
    if imported:
        logger.info("imported %d conflict records from %s into the store", imported, folder)
    return imported
