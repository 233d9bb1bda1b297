"""Ctrl-C at the CLI edge: exit 130 with one line, and what was committed before it stays.

click answers an interrupt with "Aborted!" and exit 1, the code of any failure, so a script
could not tell a user's Ctrl-C from an error, nor learn whether an interrupted ``add`` kept
anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from meshdex.node.errors import CollectionNotFound
from meshdex.node.ingest import REPEAT_WINDOW_DOCUMENTS
from meshdex.node.service import BATCH_DOCUMENTS, Node


def _documents_in(data_dir: Path, collection: str) -> int:
    try:
        with Node.open(data_dir, readonly=True) as node:
            return node.get_collection(collection).document_count
    except (CollectionNotFound, FileNotFoundError):
        return 0


def test_an_interrupted_add_exits_130_and_keeps_its_committed_batches(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "init"],
                   check=True, capture_output=True)
    fifo = tmp_path / "docs.jsonl"
    os.mkfifo(fifo)
    adding = subprocess.Popen(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "add", "--jsonl",
         str(fifo), "-c", "notes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as a terminal starts it: a suite run in the background (`pytest &`) ignores SIGINT,
        # and a Python started with SIGINT ignored never turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        with fifo.open("w") as writer:  # blocks until add opens the pipe
            # add holds the latest documents back for repeated ids: past them, one batch
            for number in range(REPEAT_WINDOW_DOCUMENTS + BATCH_DOCUMENTS):
                writer.write(json.dumps({"id": f"note-{number}",
                                         "text": f"note number {number} about gardening"})
                             + "\n")
            writer.flush()
            deadline = time.monotonic() + 60
            while (_documents_in(data_dir, "notes") < BATCH_DOCUMENTS
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            assert _documents_in(data_dir, "notes") == BATCH_DOCUMENTS
            adding.send_signal(signal.SIGINT)  # add now waits for more lines: a Ctrl-C
            _, stderr = adding.communicate(timeout=60)
    finally:
        adding.kill()
    assert adding.returncode == 130, stderr
    assert "interrupted" in stderr and "kept" in stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    assert _documents_in(data_dir, "notes") == BATCH_DOCUMENTS
