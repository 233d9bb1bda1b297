"""A build that finds every live passage indexed already, through the CLI with the real model.

Such a build embeds nothing, but the store may have moved on since the bundle was written (a
document removed and added back, a copy of a text removed): the bundle must then say it
covers the store as it is now, or status, search and export call the index behind forever.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _search_is_current(data_dir: Path, query: str) -> dict[str, Any]:
    found = _meshdex(data_dir, "search", "-c", "c", query, "--json")
    assert "changed since its index was built" not in found.stderr
    answer = json.loads(found.stdout)
    assert answer["index_behind"] is False
    return answer


@pytest.mark.model
def test_an_index_that_already_holds_every_passage_is_current_after_remove_and_add_back(
        tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ovens.txt").write_text("Preheat the oven before baking bread.\n")
    (notes / "orbits.txt").write_text("A satellite keeps its orbit by falling around Earth.\n")
    (notes / "copy.txt").write_text("Preheat the oven before baking bread.\n")  # same passage
    data = tmp_path / "data"
    _meshdex(data, "add", str(notes), "-c", "c")
    _meshdex(data, "build", "-c", "c")
    _meshdex(data, "rm", "-c", "c", "notes/copy.txt")
    removed = _meshdex(data, "build", "-c", "c")  # its passage stays: ovens.txt holds it
    _search_is_current(data, "baking bread")
    assert "c: unchanged generation 2 " in removed.stdout
    _meshdex(data, "rm", "-c", "c", "notes/orbits.txt")
    _meshdex(data, "add", str(notes), "-c", "c")  # orbits.txt and copy.txt back, as they were
    added_back = _meshdex(data, "build", "-c", "c")
    answer = _search_is_current(data, "how do satellites stay up?")
    assert answer["hits"][0]["document_id"] == "notes/orbits.txt"
    assert "c: unchanged generation 3 " in added_back.stdout
    assert "recorded the store state it now covers" in added_back.stdout
    status = _meshdex(data, "status")
    assert "c: generation 3, 2 passages" in status.stdout
    assert status.stdout.split("c: generation 3, ", 1)[1].splitlines()[0].endswith(", current")
    exported = _meshdex(data, "bundle", "export", "-c", "c", str(tmp_path / "c.leann"))
    assert "note:" not in exported.stderr

    again = _meshdex(data, "build", "-c", "c")  # nothing new: no generation written
    assert "c: unchanged generation 3 " in again.stdout
