"""``meshdex search --queries FILE``: a line it cannot use is named with its number and why,
never a traceback, and never quietly half-used. Real CLI, real store."""

from __future__ import annotations

from click.testing import CliRunner
from meshdex.node.cli.main import cli
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node


def _search(tmp_path, content: bytes):
    data_dir = tmp_path / "data"
    with Node.open(data_dir) as node:
        node.create_collection("notes")
        node.upsert_documents("notes", [DocumentInput(id="a", text="log rotation")])
    queries = tmp_path / "q.jsonl"
    queries.write_bytes(content)
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), "search", "-c", "notes",
                                    "--queries", str(queries)])


def test_a_line_not_in_utf8_is_named(tmp_path):
    result = _search(tmp_path, b'{"query": "rotation"}\n{"query": "caf\xe9"}\n')
    assert result.exit_code == 2, result.output
    assert "q.jsonl:2: not UTF-8 (byte 0xe9 at column 15)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_line_with_other_keys_is_refused_not_half_used(tmp_path):
    """Before, top_k, filter and mode on a line were passed over: five hybrid hits, no filter."""
    result = _search(tmp_path, b'{"query": "log rotation", "top_k": 1, "filter": "lang=en"}\n')
    assert result.exit_code == 2, result.output
    assert 'q.jsonl:1: unknown key(s) filter, top_k: a line holds only "query"' in result.output
    assert "--top-k, --filter" in result.output
