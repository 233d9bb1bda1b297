"""A data directory on a read-only file system (a backup mounted read-only, another machine's
disk): the commands that read it work, without warnings, and every command that would change
it fails in one line saying why (exit 5) and leaves it as it was.

Each command runs in its own mount namespace (``unshare -m``) where the data directory is
bind-mounted read-only onto itself: a real read-only file system, gone when the command ends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a read-only bind mount needs root and unshare (CI runs as root)",
)

MOUNT_READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
NOT_WRITABLE = "cannot write to the data directory"


def meshdex(data_dir: Path, *args: str, read_only: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args]
    if read_only:
        argv = ["unshare", "--mount", "sh", "-c", MOUNT_READ_ONLY, str(data_dir), *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def tree_digest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("read-only")
    notes = root / "notes"
    notes.mkdir()
    (notes / "cats.md").write_text("Cats purr when they are content and knead soft blankets.\n")
    (notes / "boats.md").write_text("A sailing boat tacks into the wind to move upwind.\n")
    data = root / "data"
    for args in (("add", str(notes), "-c", "notes"), ("build", "-c", "notes"),
                 ("search", "-c", "notes", "--mode", "hybrid", "cats"), ("id",)):
        result = meshdex(data, *args, read_only=False)
        assert result.returncode == 0, result.stderr
    return data


@pytest.mark.parametrize("args, expected", [
    (("list",), "notes: 2 documents"),
    (("status",), "notes"),
    (("stats", "-c", "notes"), "model sentence-transformers/all-MiniLM-L6-v2"),
    (("search", "-c", "notes", "how do boats sail against the wind"), "boats.md"),
    (("search", "-c", "notes", "--mode", "keyword", "purr"), "cats.md"),
    (("search", "-c", "notes", "--mode", "hybrid", "purr"), "cats.md"),
    (("peers",), "no peers"),
    (("conflicts",), "no conflicts"),
])
def test_reading_commands_work_on_a_read_only_mount(data_dir, args, expected):
    before = tree_digest(data_dir)
    result = meshdex(data_dir, *args)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert result.stderr == "", result.stderr  # no traceback, no "rebuilding" warning
    assert tree_digest(data_dir) == before


def test_id_reads_the_device_id_kept_in_the_data_directory(data_dir):
    writable = meshdex(data_dir, "id", read_only=False)
    read_only = meshdex(data_dir, "id")
    assert read_only.returncode == 0, read_only.stderr
    assert read_only.stdout == writable.stdout != ""


@pytest.mark.parametrize("args", [
    ("add", "extra.md", "-c", "notes"),
    ("build", "-c", "notes"),
    ("rm", "-c", "notes", "cats.md"),
    ("compact",),
    ("invite",),
    ("pin", "-c", "notes", "--filter", "lang=en"),
    ("serve",),
])
def test_writing_commands_fail_in_one_line_and_change_nothing(data_dir, tmp_path, args):
    (tmp_path / "extra.md").write_text("An extra note about owls hunting at night.\n")
    before = tree_digest(data_dir)
    result = meshdex(data_dir, *args, cwd=tmp_path)
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and NOT_WRITABLE in lines[0], result.stderr
    assert "Read-only file system" in lines[0]
    assert tree_digest(data_dir) == before
