"""``meshdex docs``: the documents of a collection (id, source, size, passages, last write),
by id prefix and up to a limit, the same embedded (the real CLI in a subprocess) and through
``--node`` (a real node server, the ListDocuments RPC)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from grpc_support import started_node
from meshdex.node.cli.main import cli

CODE = "def parse(text):\n    return text.split()\n\n\nclass Reader:\n    pass\n"


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    corp = root / "corp"
    corp.mkdir()
    (corp / "a.md").write_text("# A\n\nAbout apples.")
    (corp / "b.txt").write_text("Bananas, é.")
    (corp / "c.py").write_text(CODE)
    data_dir = root / "data"
    added = meshdex(data_dir, "add", str(corp), "-c", "notes")
    assert added.returncode == 0, added.stderr
    return data_dir


def listed(data_dir: Path, *args: str) -> dict:
    done = meshdex(data_dir, "docs", "-c", "notes", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_docs_lists_every_document_with_its_source_size_and_last_write(data_dir: Path) -> None:
    listing = listed(data_dir)
    assert listing["collection"] == "notes" and listing["more"] is False
    documents = {doc["id"]: doc for doc in listing["documents"]}
    assert list(documents) == ["corp/a.md", "corp/b.txt", "corp/c.py#Reader", "corp/c.py#parse"]
    banana = documents["corp/b.txt"]
    assert banana["source"].endswith("corp/b.txt")
    assert banana["size_bytes"] == len("Bananas, é.".encode())
    assert banana["passages"] == 1
    assert banana["updated"].endswith("Z")


def test_docs_by_id_prefix_and_limit(data_dir: Path) -> None:
    parts = listed(data_dir, "--prefix", "corp/c.py")
    assert [doc["id"] for doc in parts["documents"]] == ["corp/c.py#Reader", "corp/c.py#parse"]
    first = listed(data_dir, "--limit", "1")
    assert [doc["id"] for doc in first["documents"]] == ["corp/a.md"] and first["more"] is True
    assert listed(data_dir, "--limit", "4")["more"] is False


def test_docs_as_text_says_when_there_are_more(data_dir: Path) -> None:
    done = meshdex(data_dir, "docs", "-c", "notes", "--limit", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("corp/a.md") and lines[1].startswith("corp/b.txt")
    assert "12 B" in lines[1] and "1 passage" in lines[1]
    assert lines[2] == "… more documents: raise --limit, or narrow them with --prefix"


def test_docs_of_an_unknown_collection_is_not_found(data_dir: Path) -> None:
    missing = meshdex(data_dir, "docs", "-c", "nosuch")
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no collection named 'nosuch'")


def test_docs_through_a_node_lists_the_same(data_dir: Path, tmp_path: Path) -> None:
    embedded = listed(data_dir, "--prefix", "corp/", "--limit", "3")
    served = tmp_path / "served"
    subprocess.run(["cp", "-a", str(data_dir), str(served)], check=True)
    with started_node(served) as server:
        remote = CliRunner().invoke(cli, ["--node", server.address, "--token",
                                          server.tokens["read"], "docs", "-c", "notes",
                                          "--json", "--prefix", "corp/", "--limit", "3"])
        assert remote.exit_code == 0, remote.output
        assert json.loads(remote.output) == embedded
        missing = CliRunner().invoke(cli, ["--node", server.address, "--token",
                                           server.tokens["read"], "docs", "-c", "nosuch"])
        assert missing.exit_code == 3
