"""fsync by path, for files and directories alike.

A rename or a newly created entry is durable only once its directory is fsynced; every atomic
writer in meshdex (bundles, keyword indexes, store swaps, private files) ends with this.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
