"""Ingestion: walking folders (types, hidden, binary, empty, bad UTF-8), HTML text, JSONL lines,
each bad input reported with file and line while everything else goes in."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.node.ingest import (
    IngestItem,
    IngestSummary,
    collect_files,
    extract_html,
    ingest,
    read_file,
    read_jsonl,
)
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

PAGE = """<!doctype html><html><head><title> The  Guide </title>
<style>body { color: red }</style><script>var hidden = 1;</script></head>
<body><h1>Install</h1><p>Run the   installer.<br>Then restart.</p>
<pre>  indented
    code</pre><ul><li>one</li><li>two &amp; three</li></ul></body></html>"""


@pytest.fixture
def node(tmp_path: Path):
    with Node.open(tmp_path / "data") as opened:
        yield opened


def make_tree(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / ".git").mkdir()
    (docs / "a.txt").write_text("Plain text file.")
    (docs / "sub" / "b.md").write_text("# Title\n\nMarkdown body.")
    (docs / "page.html").write_text(PAGE)
    (docs / "tool.py").write_text("def main():\n    return 1\n")
    (docs / ".secret.txt").write_text("hidden")
    (docs / ".git" / "config.txt").write_text("hidden too")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")
    (docs / "blob.txt").write_bytes(b"abc\0def")
    (docs / "empty.md").write_text("  \n")
    (docs / "latin1.txt").write_bytes("line one\nline two caf\xe9\n".encode("latin-1"))
    (docs / "guide.rst.gz").write_bytes(gzip.compress(b"Gzipped reStructuredText."))
    (docs / "archive.tar.gz").write_bytes(gzip.compress(b"not a text type"))
    (docs / "broken.md.gz").write_bytes(b"not gzip at all")
    return docs


def run_ingest(node: Node, paths: list[Path], **kwargs) -> IngestSummary:
    tasks, decided = collect_files(paths, **kwargs)
    return ingest(node, "default", [*decided, *(read_file(task) for task in tasks)])


def test_walking_a_folder_adds_supported_files_and_accounts_for_the_rest(
    node: Node, tmp_path: Path
) -> None:
    docs = make_tree(tmp_path)
    summary = run_ingest(node, [docs])
    assert summary.created_collection
    assert summary.to_dict()["added"] == 5
    assert summary.skipped == {"hidden": 2, "binary": 1, "unsupported type": 2, "empty": 1}
    assert summary.errors == [
        (str(docs / "broken.md.gz"), "cannot read: Not a gzipped file (b'no')"),
        (f"{docs / 'latin1.txt'}:2", "not valid UTF-8 (byte 0xe9 at offset 21)"),
    ]
    ids = [d.id for d in node.store.iter_documents("default")]
    assert ids == [
        "docs/a.txt",
        "docs/guide.rst.gz",
        "docs/page.html",
        "docs/sub/b.md",
        "docs/tool.py",
    ]
    guide = node.get_document("default", "docs/guide.rst.gz")
    assert (guide.text, guide.metadata["type"]) == ("Gzipped reStructuredText.", "rst")
    tool = node.get_document("default", "docs/tool.py")
    assert tool.metadata == {"path": "tool.py", "type": "code", "language": "python"}
    assert tool.source == str(docs / "tool.py")
    page = node.get_document("default", "docs/page.html")
    assert page.metadata["title"] == "The Guide" and "var hidden" not in page.text


def test_readding_unchanged_files_is_a_no_op_and_edits_update(node: Node, tmp_path: Path) -> None:
    docs = make_tree(tmp_path)
    run_ingest(node, [docs])
    seq = node.store.last_seq
    again = run_ingest(node, [docs])
    assert again.to_dict()["unchanged"] == 5 and again.to_dict()["added"] == 0
    assert node.store.last_seq == seq
    (docs / "a.txt").write_text("Plain text file, edited.")
    edited = run_ingest(node, [docs])
    assert edited.to_dict()["updated"] == 1 and edited.to_dict()["unchanged"] == 4


@pytest.mark.parametrize(
    ("given", "id_prefix", "expected_ids"),
    [
        ("docs", None, ["docs/a.txt", "docs/sub/b.md"]),
        ("docs", "kb:", ["kb:a.txt", "kb:sub/b.md"]),
        ("docs/sub/b.md", None, ["b.md"]),
        ("docs/sub/b.md", "notes/", ["notes/b.md"]),
    ],
)
def test_document_ids_come_from_paths(
    node: Node, tmp_path: Path, given: str, id_prefix: str | None, expected_ids: list[str]
) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("A.")
    (tmp_path / "docs" / "sub" / "b.md").write_text("B.")
    run_ingest(node, [tmp_path / given], id_prefix=id_prefix)
    assert [d.id for d in node.store.iter_documents("default")] == expected_ids


def test_a_missing_path_is_an_error_and_the_others_still_go_in(node: Node, tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("fine")
    summary = run_ingest(node, [tmp_path / "nope", tmp_path / "ok.txt"])
    assert summary.errors == [(str(tmp_path / "nope"), "no such file or directory")]
    assert node.get_document("default", "ok.txt").text == "fine"


def test_html_text_extraction() -> None:
    text, title = extract_html(PAGE)
    assert title == "The Guide"
    expected = "Install\n\nRun the installer.\nThen restart.\n\n  indented\n    code\n\n"
    assert text == expected + "one\n\ntwo & three"


GOOD = {"id": "g1", "text": "good one", "metadata": {"lang": "en"}}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'["a list"]', "a line must be a JSON object"),
        (b'{"id": "x", "text": "t", "metadata": [1]}', '"metadata" must be a JSON object'),
        (b'{"id": "x", "text": "t", "metadata": "s"}', '"metadata" must be a JSON object'),
        (b'{"id": "x", "text": "   "}', "text is empty"),
        (b'{"id": "x"}', '"text" must be a string'),
        (b'{"text": "t"}', '"id" must be a string'),
        (b'{"id": "x", "txt": "t"}', "unknown field(s) txt"),
        (b'{"id": "x", "text": "caf\xe9"}', "not valid UTF-8"),
        (b'{"id": "", "text": "t"}', "document id must not be empty"),
        (b'{"id": "a\\u0001b", "text": "t"}', "control characters"),
        (json.dumps({"id": "x" * 600, "text": "t"}).encode(), "the limit is 512"),
        (b'{"id": "x", "text": "t", "metadata": {"k": NaN}}', "metadata is not plain JSON"),
    ],
)
def test_each_malformed_jsonl_line_is_reported_with_its_line_and_loses_nothing(
    node: Node, tmp_path: Path, line: bytes, reason: str
) -> None:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(GOOD).encode(), b"", line, json.dumps({**GOOD, "id": "g2"}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest(node, "default", read_jsonl(path))
    assert len(summary.errors) == 1
    origin, message = summary.errors[0]
    assert origin == f"{path}:3"
    assert reason in message
    assert summary.to_dict()["added"] == 2
    assert node.get_document("default", "g1").metadata == {"lang": "en"}
    assert node.get_document("default", "g2").text == "good one"


def test_jsonl_source_defaults_to_file_and_line(node: Node, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "s", "source": "web"}))
    ingest(node, "default", read_jsonl(path))
    assert node.get_document("default", "g1").source == f"{path}:1"
    assert node.get_document("default", "s").source == "web"


def test_a_repeated_document_id_is_written_once_as_the_later_and_a_rerun_writes_nothing(
        tmp_path: Path) -> None:
    """An export listing a document twice replaced the first without a word; then both were
    written on every add ("updated 2" for an unchanged file), each a change sync ships."""
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (
        {"id": "a", "text": "first text"}, {"id": "b", "text": "other"},
        {"id": "a", "text": "second text"})) + "\n")
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), "add", "--jsonl",
               str(path), "--json"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert (f"warning: {path}:3: document id 'a' was given before, at {path}:1; the later one "
            "is kept") in first.stderr
    counts = json.loads(first.stdout)
    assert (counts["added"], counts["updated"], counts["unchanged"]) == (2, 0, 0)
    with Node.open(data_dir, readonly=True) as node:
        assert node.get_document("default", "a").text == "second text"
        assert node.get_document("default", "a").source == f"{path}:3"
        changes = node.store.state("default").watermarks
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{path}:3: document id 'a' was given before" in again.stderr
    counts = json.loads(again.stdout)
    assert (counts["added"], counts["updated"], counts["unchanged"]) == (0, 0, 2)
    with Node.open(data_dir, readonly=True) as node:
        assert node.store.state("default").watermarks == changes
        assert node.get_document("default", "a").text == "second text"


@pytest.mark.parametrize(("limit", "value"), [("REPEAT_WINDOW_CHARS", 10),
                                              ("REPEAT_WINDOW_DOCUMENTS", 1)])
def test_a_repeat_beyond_the_held_window_is_still_the_one_kept(
        node: Node, monkeypatch: pytest.MonkeyPatch, limit: str, value: int) -> None:
    """Only so many documents and so much text wait for repeats (an add commits as it goes):
    past either, both occurrences are written in order."""
    monkeypatch.setattr(f"meshdex.node.ingest.{limit}", value)
    items = [IngestItem(origin=f"in.jsonl:{number}",
                        doc=DocumentInput(id=doc_id, text=text, metadata={}, source=None))
             for number, (doc_id, text) in enumerate(
                 [("a", "first text"), ("b", "other text"), ("a", "second text")], start=1)]
    summary = ingest(node, "default", items)
    assert summary.to_dict()["updated"] == 1  # "a" left the window before its repeat came
    assert summary.repeated == [("in.jsonl:3", "a", "in.jsonl:1")]
    assert node.get_document("default", "a").text == "second text"


def test_unreadable_jsonl_file_is_one_error(node: Node, tmp_path: Path) -> None:
    summary = ingest(node, "default", read_jsonl(tmp_path / "missing.jsonl"))
    assert summary.errors[0][0] == str(tmp_path / "missing.jsonl")
    assert "No such file" in summary.errors[0][1]
