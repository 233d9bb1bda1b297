"""What a filter can name, through the real ``meshdex`` CLI with the packaged model: a
document's ``source`` and ``id`` besides its metadata (the documented ``source~handbook``
examples), and a field no document has is refused naming the fields there are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("filter-fields")
    corp = root / "corp"
    corp.mkdir()
    (corp / "handbook.md").write_text("# Handbook\n\nVacation days are booked a month ahead.")
    (corp / "faq.md").write_text("# FAQ\n\nVacation questions go to the people team.")
    (corp / "recipes.txt").write_text("Bake the bread for forty minutes at 220 degrees.")
    data_dir = root / "data"
    for args in (("add", str(corp), "-c", "notes"), ("build", "-c", "notes")):
        done = meshdex(data_dir, *args)
        assert done.returncode == 0, done.stderr
    return data_dir


def search_sources(data_dir: Path, spec: str) -> list[str]:
    done = meshdex(data_dir, "search", "-c", "notes", "vacation", "--filter", spec, "--json")
    assert done.returncode == 0, done.stderr
    return [hit["source"] for hit in json.loads(done.stdout)["hits"]]


def test_the_documented_source_filter_finds_the_documents_from_that_source(built: Path) -> None:
    sources = search_sources(built, "source~handbook")
    assert sources and all(source.endswith("corp/handbook.md") for source in sources)


def test_a_filter_on_the_document_id_finds_that_document(built: Path) -> None:
    assert [Path(s).name for s in search_sources(built, 'id="corp/faq.md"')] == ["faq.md"]


def test_the_documented_pin_example_pins_the_documents_from_that_source(built: Path) -> None:
    done = meshdex(built, "pin", "-c", "notes", "--filter", "source~handbook", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"] == 1


@pytest.mark.parametrize("command", [
    ("search", "-c", "notes", "vacation"),
    ("pin", "-c", "notes"),
])
def test_a_field_no_document_has_is_refused_naming_the_known_ones(
    built: Path, command: tuple[str, ...]
) -> None:
    done = meshdex(built, *command, "--filter", "lnag=en")
    assert done.returncode == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "'lnag'" in line and "collection 'notes'" in line
    assert "id, path, source, type" in line


def test_a_known_field_that_matches_nothing_is_an_empty_answer_not_an_error(built: Path) -> None:
    assert search_sources(built, "type=pdf") == []
