"""``meshdex rm`` of a file a reader split into parts (a Python file by function and class),
by the file's own id, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEFINITIONS = '''def parse(text):
    return text.split()


class Reader:
    def read(self):
        return text
'''
WITH_MODULE_CODE = '''import sys

LIMIT = 3


def main():
    return sys.argv
'''


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    corp = tmp_path / "corp"
    corp.mkdir()
    (corp / "c.py").write_text(DEFINITIONS)  # parse, Reader
    (corp / "b.py").write_text(WITH_MODULE_CODE)  # its module-level rest, main
    (corp / "a.md").write_text("# A\n\nAbout apples.")
    data_dir = tmp_path / "data"
    added = meshdex(data_dir, "add", str(corp))
    assert added.returncode == 0, added.stderr
    return data_dir


def document_count(data_dir: Path) -> int:
    status = json.loads(meshdex(data_dir, "status", "--json").stdout)
    return status["collections"][0]["document_count"]


def test_rm_of_a_split_file_by_its_path_removes_its_parts(data_dir: Path) -> None:
    assert document_count(data_dir) == 5
    removed = meshdex(data_dir, "rm", "corp/c.py")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        "default: deleted 2",
        "corp/c.py: deleted the 2 documents read from it",
    ]
    assert document_count(data_dir) == 3
    again = meshdex(data_dir, "rm", "corp/c.py", "--json")
    assert again.returncode == 3
    assert json.loads(again.stdout)["not_found"] == ["corp/c.py"]


def test_rm_of_a_split_file_with_module_code_removes_that_too(data_dir: Path) -> None:
    removed = meshdex(data_dir, "rm", "corp/b.py", "corp/c.py", "--json")
    assert removed.returncode == 0, removed.stderr
    report = json.loads(removed.stdout)
    assert sorted(report["deleted"]) == [
        "corp/b.py", "corp/b.py#main", "corp/c.py#Reader", "corp/c.py#parse"]
    assert report["not_found"] == []
    assert document_count(data_dir) == 1


def test_rm_of_one_part_leaves_the_others(data_dir: Path) -> None:
    removed = meshdex(data_dir, "rm", "corp/c.py#parse")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == ["default: deleted 1"]
    assert document_count(data_dir) == 4


def test_rm_of_a_folder_is_not_taken_for_a_split_file(data_dir: Path) -> None:
    refused = meshdex(data_dir, "rm", "corp")
    assert refused.returncode == 3
    assert document_count(data_dir) == 5
