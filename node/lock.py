"""The writer lock of a data directory: one writing process at a time, readers unrestricted.

LMDB allows one write transaction at a time but happily lets two processes take turns, which
would interleave two writers' change logs and clocks. A ``flock`` on ``writer.lock`` makes the
second writer fail at once with ``StoreLocked`` naming the holder's pid. The kernel drops the
lock when the holder exits, even on kill -9, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from meshdex.node.errors import StoreLocked
from meshdex.node.paths import PRIVATE_FILE_MODE

LOCK_FILE_NAME = "writer.lock"


class WriterLock:
    """An exclusive, non-blocking lock on ``data_dir/writer.lock``, held until ``release``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"another process (pid {holder}) is writing to the data directory {data_dir}",
                op="open",
                path=data_dir,
                hint="wait for it to finish or stop it; read-only commands still work",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(data_dir: Path) -> int | None:
    """The pid of the process holding ``data_dir``'s writer lock, or None when it is free.

    Probed with a shared, non-blocking lock released at once; the holder writes its pid into
    the file when it takes the lock.
    """
    path = data_dir / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
