"""Collection names that differ only in case are one name.

A collection's index files are named after it (``index/NAME.leann``), so on a case-insensitive
file system, macOS's and Windows' default, "Notes" and "notes" would share one bundle: each
build overwrote the other's index. The second is refused, at the CLI and over gRPC alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from grpc_support import started_node
from meshdex.index.errors import AlreadyExists
from meshdex.node.cli.main import cli, exit_code_for
from meshdex.node.errors import CollectionExists
from meshdex.node.service import Node


def test_a_collection_differing_only_in_case_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("Apples ripen in late summer.")
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data")]
    first = runner.invoke(cli, [*base, "add", str(notes), "-c", "notes"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, [*base, "add", str(notes), "-c", "Notes"])
    assert second.exit_code == exit_code_for(CollectionExists("")) == 4, second.output
    assert "collection 'notes' already exists" in second.output
    assert "hint: use 'notes'" in second.output
    with Node.open(tmp_path / "data", readonly=True) as node:
        assert [info.name for info in node.list_collections()] == ["notes"]


def test_grpc_create_collection_refuses_another_case_of_a_name(tmp_path: Path) -> None:
    with Node.open(tmp_path) as node:
        node.create_collection("Papers")
    with started_node(tmp_path) as server:
        client = server.client("write")
        try:
            with pytest.raises(AlreadyExists, match="'Papers' already exists"):
                client.create_collection("PAPERS")
            assert [info.name for info in client.list_collections()] == ["Papers"]
        finally:
            client.close()
