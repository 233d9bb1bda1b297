"""``meshdex add --dry-run`` ends with the exit code the add itself would: it exited 0 when
every input would be skipped (the add exits 2) and listed as "would add" a document the node
rejects (the add exits 11). Each case runs the real CLI twice on the same inputs, dry run
first, and the dry run must leave no data directory behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.main import EXIT_CODES, EXIT_PARTIAL_FAILURE
from meshdex.node.ingest import MAX_FILE_BYTES
from meshdex.node.validation import MAX_DOCUMENT_ID_BYTES


def _meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _inputs(folder: Path, case: str) -> list[str]:
    """The ``add`` arguments of ``case``, its files made in ``folder``."""
    note = folder / "note.md"
    note.write_text("Reef the mainsail early when the wind picks up.")
    if case == "binary":
        (folder / "blob.bin").write_bytes(bytes(range(256)) * 8)
        return [str(folder / "blob.bin")]
    if case == "too-large":
        with (folder / "huge.txt").open("wb") as huge:  # sparse: the size is what is checked
            huge.truncate(MAX_FILE_BYTES + 1)
        return [str(folder / "huge.txt")]
    if case == "missing-beside-a-note":
        return [str(folder / "missing.md"), str(note)]
    if case == "rejected-id":
        lines = [{"id": "x" * (MAX_DOCUMENT_ID_BYTES + 1), "text": "an id over the limit"},
                 {"id": "fine", "text": "a document that goes in"}]
        (folder / "docs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return ["--jsonl", str(folder / "docs.jsonl")]
    return [str(note)]


@pytest.mark.parametrize(("case", "code"), [
    ("binary", EXIT_CODES[InvalidArgument]),
    ("too-large", EXIT_CODES[InvalidArgument]),
    ("missing-beside-a-note", EXIT_PARTIAL_FAILURE),
    ("rejected-id", EXIT_PARTIAL_FAILURE),
    ("a-note", 0),
])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_dry_run_exits_with_the_code_the_add_would(tmp_path, case, code, as_json) -> None:
    data_dir = tmp_path / "data"
    args = ["add", *_inputs(tmp_path, case), "-c", "notes", *(["--json"] if as_json else [])]
    dry = _meshdex(data_dir, *args, "--dry-run")
    assert not data_dir.exists()
    added = _meshdex(data_dir, *args)
    assert (dry.returncode, added.returncode) == (code, code), dry.stderr + added.stderr
    if as_json:
        listed = json.loads(dry.stdout)
        assert any(entry["action"] == "error" for entry in listed) == (
            code == EXIT_PARTIAL_FAILURE)
