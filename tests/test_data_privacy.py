"""What other local users can see (issue 8, item 5): a data directory is 0700 and every file in
it 0600 whatever the umask, and ``add`` does not follow symlinks out of the folders given.
Real ``meshdex add`` processes, a real store, tokens and index bundles."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from fakes import HashingEmbedder
from meshdex.node.indexing import IndexManager
from meshdex.node.service import Node
from meshdex.node.store import Store


def meshdex(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, under ``umask``."""
    return subprocess.run(
        [sys.executable, "-m", "meshdex", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, preexec_fn=lambda: os.umask(umask),
    )


def _modes(data_dir) -> dict[str, int]:
    modes = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for path in data_dir.rglob("*"):
        modes[str(path.relative_to(data_dir))] = stat.S_IMODE(path.lstat().st_mode)
    return modes


def _build_and_search_with_hashing_embedder(data_dir) -> None:
    """A build, then a search whose recomputed vectors the learned cache saves on close."""
    store = Store.open(data_dir)
    indexes = IndexManager(store, embedder_factory=lambda _: HashingEmbedder())
    with Node(store, indexes=indexes) as node:
        node.build("default")
        node.search("default", "bank pin")


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_file_in_the_data_dir_is_private_whatever_the_umask(tmp_path, umask):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "secret.md").write_text("my bank pin is 1234")
    data_dir = tmp_path / "data"
    result = meshdex("--data-dir", str(data_dir), "add", str(notes), umask=umask)
    assert result.returncode == 0, result.stderr
    assert meshdex("--data-dir", str(data_dir), "token", "create", "--scope", "read",
                   umask=umask).returncode == 0
    previous = os.umask(umask)
    try:
        _build_and_search_with_hashing_embedder(data_dir)
    finally:
        os.umask(previous)
    modes = _modes(data_dir)
    assert {"store/data.mdb", "store/lock.mdb", "tokens.json", "indexes/default.leann",
            "indexes/decisions.jsonl", "indexes/default.learned-cache"} <= set(modes)
    loose = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert not loose, loose
    assert modes["."] == modes["store"] == modes["indexes"] == 0o700


def test_a_data_dir_made_readable_before_is_tightened_on_open(tmp_path):
    data_dir = tmp_path / "data"
    with Node.open(data_dir):
        pass
    for path in [data_dir, *data_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    with Node.open(data_dir):
        pass
    assert not {name: oct(mode) for name, mode in _modes(data_dir).items() if mode & 0o077}


def test_symlinks_out_of_the_folder_are_skipped_unless_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash")
    (outside / "folder").mkdir()
    (outside / "folder" / "more.txt").write_text("text from a linked folder")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("a note of my own")
    (notes / "inside-link.txt").symlink_to(notes / "mine.txt")
    (notes / "passwd.txt").symlink_to(outside / "passwd.txt")
    (notes / "linked").symlink_to(outside / "folder", target_is_directory=True)
    data_dir = tmp_path / "data"

    result = meshdex("--data-dir", str(data_dir), "add", str(notes))
    assert result.returncode == 0, result.stderr
    assert f"skipped {notes / 'passwd.txt'}: it links to {outside / 'passwd.txt'}" in result.stderr
    assert f"skipped {notes / 'linked'}: it links to {outside / 'folder'}" in result.stderr
    with Node.open(data_dir) as node:
        ids = sorted(doc.id for doc in node.store.iter_documents("default"))
    assert ids == ["notes/inside-link.txt", "notes/mine.txt"]

    result = meshdex("--data-dir", str(data_dir), "add", "--follow-symlinks", str(notes))
    assert result.returncode == 0, result.stderr
    with Node.open(data_dir) as node:
        texts = {doc.id: doc.text for doc in node.store.iter_documents("default")}
    assert texts["notes/passwd.txt"].startswith("root:x:0:0")
    assert texts["notes/linked/more.txt"] == "text from a linked folder"
