"""How ``meshdex sync`` prints a session: the headline says when a collection failed.

A session whose collection was refused printed "laptop (ABCDEFG): ok" above the collection's
error and exited 12. The session itself is a stand-in here (the text is what is under test;
the sessions are tested against real peers elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from meshdex.node.cli.main import cli
from meshdex.sync.admin import LocalSyncAdmin
from meshdex.sync.client import CollectionReport, SessionReport


@pytest.mark.parametrize(("collections", "headline", "code"), [
    ([CollectionReport(collection="notes", received=2)], "ok", 0),
    ([CollectionReport(collection="notes", received=2),
      CollectionReport(collection="mail", error="a change is 59.9 min ahead")],
     "1 of 2 collections failed", 12),
])
def test_the_headline_of_a_session_says_when_a_collection_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collections, headline, code) -> None:
    report = SessionReport(peer="ABCDEFGHIJ", name="laptop", collections=collections)
    monkeypatch.setattr(LocalSyncAdmin, "sync_now", lambda self, peer, **_: [report])
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "sync"])
    assert result.exit_code == code, result.output
    assert result.output.splitlines()[0] == f"laptop (ABCDEFG): {headline}"
