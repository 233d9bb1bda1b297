"""A refused command's one error line ends with a hint that says what to do: a JSON ``--filter``
it cannot read shows the JSON form with an example (it gave none, and the JSON syntax is not
the shorthand's); a peers file it cannot read names the file and how to restore it or pair
again (it said only that the file could not be read). Real CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.node.cli.main import EXIT_CODES, exit_code_for
from meshdex.sync.errors import TrustStoreCorrupt
from meshdex.sync.trust import TrustStore


def _meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _one_error_line(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The error and its hint, from stderr's one line."""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: "), line
    error, _, hint = line.partition(" hint: ")
    return error, hint


@pytest.fixture(scope="module")
def notes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notes")
    (folder / "a.md").write_text("Reef the mainsail early when the wind picks up.")
    data_dir = folder / "data"
    assert _meshdex(data_dir, "add", str(folder / "a.md"), "-c", "notes").returncode == 0
    return data_dir


@pytest.mark.parametrize(("spec", "words"), [
    ('{field: "lang", op: "eq", value: "en"}', "filter is not valid JSON"),
    ('{"field": "lang", "value": "en"}', "a condition needs exactly 'field', 'op' and 'value'"),
    ('{"field": "lang", "op": "=", "value": "en"}', "unknown op '='"),
    ('{"and": {"field": "lang", "op": "eq", "value": "en"}}', "expected a non-empty list"),
    ('{"field": "lang", "op": "eq", "value": "en"', "filter is not valid JSON"),
], ids=["unquoted-keys", "no-op", "shorthand-op", "and-of-an-object", "unclosed"])
def test_a_json_filter_it_cannot_read_shows_the_json_syntax_with_an_example(
        notes: Path, spec: str, words: str) -> None:
    result = _meshdex(notes, "search", "sails", "-c", "notes", "--filter", spec)
    assert result.returncode == EXIT_CODES[InvalidArgument], result.stderr
    error, hint = _one_error_line(result)
    assert words in error
    assert '{"field": "lang", "op": "eq", "value": "en"}' in hint
    assert '{"and": [' in hint and "gte" in hint


def test_a_peers_file_it_cannot_read_says_how_to_restore_it_or_pair_again(tmp_path) -> None:
    data_dir = tmp_path / "data"
    assert _meshdex(data_dir, "init").returncode == 0
    peers_file = TrustStore(data_dir).path
    peers_file.write_text("{not json")
    result = _meshdex(data_dir, "peers")
    assert result.returncode == exit_code_for(TrustStoreCorrupt("")), result.stderr
    error, hint = _one_error_line(result)
    assert "cannot read the peers file" in error and str(peers_file) in error
    assert "restore peers.json from a backup" in hint
    assert "`meshdex invite`" in hint and "`meshdex join TOKEN`" in hint
