"""Private files of the sync layer: its 0700 folder and a cross-process lock (atomic 0600
writes are ``meshdex.node.paths.write_private_file``).

The trust store, invites and the device key live in plain files (not the LMDB store) so that
``meshdex peer add``, ``invite`` and ``join`` work while ``meshdex serve`` holds the store's
writer lock; a running server re-reads them when they change.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meshdex.node.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE

SYNC_DIR_NAME = "sync"


def sync_dir(data_dir: Path) -> Path:
    """``DATA_DIR/sync`` (mode 0700), created on first use."""
    path = Path(data_dir) / SYNC_DIR_NAME
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a sibling ``.lock`` file of ``path`` (read-modify-write)."""
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
