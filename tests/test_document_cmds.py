"""``meshdex show`` and ``meshdex export``: a document and a whole collection read back out,
embedded and through a real node, and an export that ``meshdex add --jsonl`` reads back to
the same collection. Real CLI, real store, real gRPC server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from grpc_support import started_node
from meshdex.index.errors import NotFound
from meshdex.node.cli.main import EXIT_CODES, cli
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

DOCUMENTS = [
    DocumentInput(id="notes/caf\u00e9.md", text="# Caf\u00e9\n\nEspresso, ristretto.\n",
                  metadata={"lang": "fr", "tags": ["coffee", "bar"], "rating": {"stars": 4}},
                  source="/home/me/notes/caf\u00e9.md"),
    DocumentInput(id="notes/tea.md", text="Green tea steeps at eighty degrees.",
                  metadata={}, source=None),
    DocumentInput(id="todo", text="line one\nline two\n\n\u2003indented", metadata={"n": 1},
                  source="inbox"),
]


def _meshdex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _prepare(data_dir: Path) -> None:
    with Node.open(data_dir) as node:
        node.create_collection("notes")
        node.upsert_documents("notes", DOCUMENTS)


@pytest.fixture
def both_ways(tmp_path: Path):
    embedded_dir, remote_dir = tmp_path / "embedded", tmp_path / "remote"
    _prepare(embedded_dir)
    _prepare(remote_dir)
    runner = CliRunner()
    with started_node(remote_dir) as server:
        yield {
            "embedded": lambda *args: runner.invoke(cli, ["--data-dir", str(embedded_dir),
                                                          *args]),
            "remote": lambda *args: runner.invoke(cli, ["--node", server.address, "--token",
                                                        server.tokens["read"], *args]),
        }


def test_show_prints_a_document_whole_the_same_both_ways(both_ways):
    shown = {mode: run("show", "-c", "notes", "notes/caf\u00e9.md") for mode, run in
             both_ways.items()}
    assert shown["embedded"].exit_code == 0, shown["embedded"].output
    lines = shown["embedded"].output.split("\n")
    remote = shown["remote"].output.split("\n")
    # the two data directories were written a moment apart: all but the last write agree
    assert remote[:2] + remote[3:] == lines[:2] + lines[3:]
    assert lines[0] == "id:       notes/caf\u00e9.md"
    assert lines[1] == "source:   /home/me/notes/caf\u00e9.md"
    assert lines[2].startswith("updated:  20") and lines[2].endswith(" UTC")
    assert lines[3] == "passages: 1"
    assert json.loads(lines[4].removeprefix("metadata: ")) == DOCUMENTS[0].metadata
    assert "\n".join(lines[6:]) == DOCUMENTS[0].text  # the text as stored, nothing added


def test_show_json_and_an_unknown_id(both_ways):
    for mode, run in both_ways.items():
        as_json = run("show", "-c", "notes", "todo", "--json")
        assert as_json.exit_code == 0, (mode, as_json.output)
        document = json.loads(as_json.output)
        assert (document["id"], document["text"], document["metadata"]) == (
            "todo", DOCUMENTS[2].text, {"n": 1}), mode
        missing = run("show", "-c", "notes", "nope")
        assert missing.exit_code == 3, mode
        assert missing.output == "error: no document 'nope' in collection 'notes'\n", mode


def test_export_then_add_jsonl_gives_back_the_same_documents(both_ways, tmp_path):
    exported = {mode: run("export", "-c", "notes") for mode, run in both_ways.items()}
    assert exported["embedded"].exit_code == 0, exported["embedded"].output
    assert exported["remote"].output == exported["embedded"].output
    lines = exported["embedded"].output.splitlines()
    assert [json.loads(line)["id"] for line in lines] == sorted(doc.id for doc in DOCUMENTS)

    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text(exported["embedded"].output, encoding="utf-8")
    copy = tmp_path / "copy"
    added = CliRunner().invoke(cli, ["--data-dir", str(copy), "add", "--jsonl", str(jsonl),
                                     "-c", "notes"])
    assert added.exit_code == 0, added.output
    with Node.open(copy, readonly=True) as node:
        for original in DOCUMENTS:
            document = node.get_document("notes", original.id)
            assert (document.text, document.metadata, document.source) == (
                original.text, original.metadata, original.source)
    again = CliRunner().invoke(cli, ["--data-dir", str(copy), "export", "-c", "notes"])
    assert again.output == exported["embedded"].output


def test_export_to_a_file_is_whole_or_absent(both_ways, tmp_path):
    run = both_ways["embedded"]
    target = tmp_path / "out.jsonl"
    result = run("export", "-c", "notes", "--prefix", "notes/", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in target.read_text("utf-8").splitlines()] == [
        "notes/caf\u00e9.md", "notes/tea.md"]
    assert "exported 2 documents of 'notes' to" in result.output

    refused = run("export", "-c", "nosuch", "-o", str(tmp_path / "none.jsonl"))
    assert refused.exit_code == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "embedded", "out.jsonl", "remote"]


PYTHON_FILE = '''def parse(text):
    """Split text into words."""
    return text.split()


def render(words):
    """Join words into text."""
    return " ".join(words)
'''


def test_show_of_a_file_read_as_several_documents_names_them(tmp_path):
    """A Python file is read as one document per function (``tool.py#parse``); `show` of the
    file's own id said only "no document", as if the file had never been added."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tool.py").write_text(PYTHON_FILE)
    data_dir = tmp_path / "data"
    added = _meshdex("--data-dir", str(data_dir), "add", str(tmp_path / "src"), "-c", "code")
    assert added.returncode == 0, added.stderr
    args = ("show", "-c", "code", "src/tool.py")
    shown = {"embedded": _meshdex("--data-dir", str(data_dir), *args)}
    with started_node(data_dir) as server:
        shown["remote"] = _meshdex("--node", server.address, "--token", server.tokens["read"],
                                   *args)
    for mode, result in shown.items():
        assert result.returncode == EXIT_CODES[NotFound], (mode, result.stderr)
        [line] = result.stderr.splitlines()
        assert ("error: no document 'src/tool.py' in collection 'code'; 2 documents were read "
                "from it: src/tool.py#parse, src/tool.py#render hint: ") in line, (mode, line)
        assert "meshdex show -c code 'src/tool.py#parse'" in line
    unknown = _meshdex("--data-dir", str(data_dir), "show", "-c", "code", "src/tool")
    assert unknown.stderr == "error: no document 'src/tool' in collection 'code'\n"
