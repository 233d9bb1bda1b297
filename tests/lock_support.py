"""Another process holding a data directory's writer lock, as a second writer would find it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from meshdex.node.service import Node
    node = Node.open(sys.argv[1])
    print("holding", flush=True)
    time.sleep(60)
    """
)


@contextmanager
def writer_lock_held(data_dir: Path) -> Iterator[subprocess.Popen]:
    """A process with ``data_dir`` open for writing until the block ends (then killed)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(data_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()
