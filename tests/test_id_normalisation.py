"""A document id spelled in another Unicode normal form finds the document: macOS writes file
names decomposed (NFD, "cafe\u0301.md"), a person types them composed (NFC, "caf\u00e9.md").

``meshdex rm`` through the real CLI, ``get_document`` through a real ``meshdex mcp``; ids are
stored as they came (nothing renamed), the id as given wins, and the report names the id
actually deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

NFC = "caf\u00e9.md"
NFD = "cafe\u0301.md"
TEXT = "Espresso is brewed by forcing hot water through finely ground coffee."
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120, env=ENV)


def added(tmp_path: Path, *names: str) -> Path:
    """A data directory holding a folder ``notes`` with a file of each name, added by the CLI."""
    notes = tmp_path / "notes"
    notes.mkdir()
    for name in names:
        (notes / name).write_text(f"{TEXT} ({ascii(name)})")
    (notes / "tea.md").write_text("Green tea steeps at eighty degrees for two minutes.")
    data_dir = tmp_path / "data"
    result = meshdex(data_dir, "add", str(notes))
    assert result.returncode == 0, result.stderr
    return data_dir


def document_ids(data_dir: Path) -> list[str]:
    listed = meshdex(data_dir, "docs", "--json")
    assert listed.returncode == 0, listed.stderr
    return [entry["id"] for entry in json.loads(listed.stdout)["documents"]]


@pytest.mark.parametrize("stored, typed", [(NFD, NFC), (NFC, NFD)], ids=["nfd-file", "nfc-file"])
def test_rm_finds_a_document_named_in_the_other_normal_form(tmp_path: Path, stored: str,
                                                            typed: str):
    data_dir = added(tmp_path, stored)
    assert document_ids(data_dir) == sorted([f"notes/{stored}", "notes/tea.md"])

    result = meshdex(data_dir, "rm", "--json", f"notes/{typed}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == [f"notes/{stored}"]
    assert result.stderr == ""
    assert document_ids(data_dir) == ["notes/tea.md"]


def test_rm_of_an_id_as_given_leaves_its_twin_in_the_other_form(tmp_path: Path):
    """Two files whose names differ only by normal form (possible on Linux) stay two
    documents: the id as given is the one deleted."""
    data_dir = added(tmp_path, NFC, NFD)
    result = meshdex(data_dir, "rm", "--json", f"notes/{NFC}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == [f"notes/{NFC}"]
    assert document_ids(data_dir) == sorted([f"notes/{NFD}", "notes/tea.md"])


def test_rm_of_an_id_in_no_form_is_still_not_found(tmp_path: Path):
    data_dir = added(tmp_path, NFD)
    result = meshdex(data_dir, "rm", "notes/cafe.md")
    assert result.returncode == 3
    assert result.stderr == "error: no document 'notes/cafe.md' in collection 'default'\n"
    assert result.stdout == ""  # not "default: deleted 0" beside the error
    assert document_ids(data_dir) == sorted([f"notes/{NFD}", "notes/tea.md"])


@pytest.mark.parametrize("stored, typed", [("cafe\u0301.py", "caf\u00e9.py"),
                                            ("caf\u00e9.py", "cafe\u0301.py")],
                         ids=["nfd-file", "nfc-file"])
def test_rm_of_a_split_file_named_in_the_other_form_removes_its_parts(tmp_path: Path,
                                                                      stored: str, typed: str):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / stored).write_text("def brew():\n    return 1\n\n\ndef pour():\n    return 2\n")
    (notes / "tea.md").write_text("Green tea steeps at eighty degrees for two minutes.")
    data_dir = tmp_path / "data"
    assert meshdex(data_dir, "add", str(notes)).returncode == 0
    parts = [f"notes/{stored}#brew", f"notes/{stored}#pour"]
    assert document_ids(data_dir) == sorted([*parts, "notes/tea.md"])

    result = meshdex(data_dir, "rm", f"notes/{typed}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "default: deleted 2", f"notes/{typed}: deleted the 2 documents read from it"]
    assert result.stderr == ""
    assert document_ids(data_dir) == ["notes/tea.md"]


def _get_documents(data_dir: Path, tmp_path: Path, *ids: str) -> list[Any]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "meshdex", "--data-dir", str(data_dir), "mcp"],
        env={**ENV, "XDG_CONFIG_HOME": str(tmp_path / "no-config")})

    async def session() -> list[Any]:
        async with Client(params) as client:
            return [await client.call_tool("get_document", {"document_id": doc_id})
                    for doc_id in ids]

    return anyio.run(session)


def test_get_document_finds_a_document_named_in_the_other_normal_form(tmp_path: Path):
    data_dir = added(tmp_path, NFD)
    typed, nowhere = _get_documents(data_dir, tmp_path, f"notes/{NFC}", "notes/cafe.md")
    assert not typed.is_error, typed.content
    assert typed.structured_content["id"] == f"notes/{NFD}"
    assert typed.structured_content["text"].startswith(TEXT)
    assert nowhere.is_error and "no document 'notes/cafe.md'" in nowhere.content[0].text
