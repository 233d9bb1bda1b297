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

from meshdex.node.errors import DataDirNotWritable
from meshdex.node.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, restrict_mode

SYNC_DIR_NAME = "sync"


def sync_dir(data_dir: Path) -> Path:
    """``DATA_DIR/sync`` (mode 0700), created on first use.

    In a data directory this user cannot write (a read-only mount) the folder is left as it
    is, or absent: reading it works, and a write fails in ``locked`` with the error that says
    why.
    """
    path = Path(data_dir) / SYNC_DIR_NAME
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        restrict_mode(path, PRIVATE_DIR_MODE)
    except OSError as error:
        if not DataDirNotWritable.is_cause(error):
            raise
    return path


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a sibling ``.lock`` file of ``path`` (read-modify-write);
    ``DataDirNotWritable`` where the folder cannot be written."""
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    except OSError as error:
        DataDirNotWritable.raise_for(path.parent.parent, error)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
