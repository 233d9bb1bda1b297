"""The ``SyncProgress`` contract, run against every implementation (today: ``FileProgress``;
the store's change log is to provide the next one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from meshdex.sync.progress import Conflict, FileProgress

IMPLEMENTATIONS = [FileProgress]


def _conflict(doc_id: str, losing: str) -> Conflict:
    return Conflict(collection="c", doc_id=doc_id, losing_hlc=losing, winning_hlc="w",
                    origin_device="o", deleted=False, text="t", metadata={"k": 1},
                    source=None, recorded_at=1.0)


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda cls: cls.__name__)
def make(request, tmp_path: Path):
    return lambda: request.param(tmp_path)


def test_cursors_and_acks_start_at_zero_only_move_forward_and_survive_reopening(make) -> None:
    progress = make()
    assert progress.get_cursor("p", "c") == progress.get_ack("p", "c") == 0
    progress.set_cursor("p", "c", 10)
    progress.set_cursor("p", "c", 4)  # a late, older batch never moves it back
    progress.set_ack("p", "c", 7)
    reopened = make()
    assert (reopened.get_cursor("p", "c"), reopened.get_ack("p", "c")) == (10, 7)
    assert reopened.get_cursor("p", "other") == reopened.get_cursor("q", "c") == 0


def test_conflicts_are_kept_once_and_filtered_by_collection(make) -> None:
    progress = make()
    progress.add_conflicts([_conflict("a", "h1"), _conflict("b", "h2")])
    progress.add_conflicts([_conflict("a", "h1")])
    assert [c.doc_id for c in make().all_conflicts()] == ["a", "b"]
    assert make().all_conflicts("elsewhere") == []


def test_a_conflict_record_cut_short_by_a_crash_does_not_hide_the_others(tmp_path) -> None:
    progress = FileProgress(tmp_path)
    progress.add_conflicts([_conflict("a", "h1")])
    with progress.conflicts_path.open("a") as file:
        file.write('{"collection": "c", "doc_')
    assert [c.doc_id for c in FileProgress(tmp_path).all_conflicts()] == ["a"]
