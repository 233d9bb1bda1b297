"""Private files of the sync layer: atomic 0600 writes and a cross-process lock.

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

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
SYNC_DIR_NAME = "sync"


def sync_dir(data_dir: Path) -> Path:
    """``DATA_DIR/sync`` (mode 0700), created on first use."""
    path = Path(data_dir) / SYNC_DIR_NAME
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically with mode 0600: temp file, fsync, rename, fsync dir.

    With ``exclusive`` the file is only created if absent (``os.link``, atomic across
    processes) and the return value says whether this call created it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    created = True
    if exclusive:
        try:
            os.link(tmp, path)
        except FileExistsError:
            created = False
        os.unlink(tmp)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent)
    return created


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
