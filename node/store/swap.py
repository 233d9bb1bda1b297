"""Replacing the store directory with a rebuilt one (compaction, migration), crash-safe.

::

    store-building/  being written; a crash leaves it behind and the next open deletes it
    store-ready/     complete, fsynced and verified: the next open finishes the swap
    store-retired/   the previous store, deleted once the new one is in place

Each step is a rename within the data directory (atomic), followed by an fsync of the
directory, so after kill -9 at any point exactly one of the old or the new store is whole
and ``recover`` (run under the writer lock by every writing open) picks it. Readers that have
the old store open keep reading their snapshot: their files stay valid until they close them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from meshdex.index.fsync import fsync_path
from meshdex.node.paths import PRIVATE_DIR_MODE, STORE_DIR_NAME

logger = logging.getLogger(__name__)

BUILDING_DIR_NAME = "store-building"
READY_DIR_NAME = "store-ready"
RETIRED_DIR_NAME = "store-retired"


def fresh_building_dir(data_dir: Path) -> Path:
    """An empty directory to build the replacement store in."""
    building = data_dir / BUILDING_DIR_NAME
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(mode=PRIVATE_DIR_MODE)
    return building


def commit(data_dir: Path, building: Path) -> None:
    """Make the finished ``building`` directory the store, retiring the old one."""
    for child in building.iterdir():
        fsync_path(child)
    fsync_path(building)
    building.rename(data_dir / READY_DIR_NAME)
    fsync_path(data_dir)
    recover(data_dir)


def recover(data_dir: Path) -> None:
    """Finish or undo a replacement interrupted by a crash (idempotent)."""
    store = data_dir / STORE_DIR_NAME
    ready = data_dir / READY_DIR_NAME
    retired = data_dir / RETIRED_DIR_NAME
    building = data_dir / BUILDING_DIR_NAME
    if building.exists():
        logger.info("removing an unfinished store rebuild in %s", building)
        shutil.rmtree(building)
    if ready.exists():
        if store.exists():
            shutil.rmtree(retired, ignore_errors=True)
            store.rename(retired)
            fsync_path(data_dir)
        ready.rename(store)
        fsync_path(data_dir)
    if retired.exists():
        shutil.rmtree(retired)
