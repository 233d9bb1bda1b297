"""``meshdex drop``: a collection and everything in it leave this device, only when asked
for by --yes or a confirmed prompt; through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.sync.identity import load_identity
from meshdex.sync.trust import TrustStore, make_peer


def meshdex(data_dir: Path, *args: str, answer: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
                          input=answer, stdin=None if answer is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nAbout apples.")
    (notes / "b.txt").write_text("About bananas.")
    data_dir = tmp_path / "data"
    for collection in ("notes", "other"):
        added = meshdex(data_dir, "add", str(notes), "-c", collection)
        assert added.returncode == 0, added.stderr
    return data_dir


def collections(data_dir: Path) -> list[str]:
    return [info["name"] for info in json.loads(meshdex(data_dir, "list", "--json").stdout)]


@pytest.mark.parametrize("answer", [None, "y\n"])
def test_drop_with_yes_or_a_yes_answer_drops_only_that_collection(
    data_dir: Path, answer: str | None
) -> None:
    args = ("drop", "-c", "notes") if answer else ("drop", "-c", "notes", "--yes")
    dropped = meshdex(data_dir, *args, answer=answer)
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.strip() == "dropped collection 'notes' (2 documents) from this device"
    assert collections(data_dir) == ["other"]


def test_drop_answered_no_keeps_the_collection(data_dir: Path) -> None:
    kept = meshdex(data_dir, "drop", "-c", "notes", answer="n\n")
    assert kept.returncode == 1
    assert "drop collection 'notes' with its 2 documents and its index" in kept.stderr
    assert "nothing dropped" in kept.stderr
    assert collections(data_dir) == ["notes", "other"]


def test_drop_without_yes_and_nobody_to_answer_is_refused(data_dir: Path) -> None:
    refused = meshdex(data_dir, "drop", "-c", "notes")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: not dropping collection 'notes' without an answer hint: give --yes to drop "
        "it without asking")
    assert collections(data_dir) == ["notes", "other"]


@pytest.mark.parametrize("yes", [(), ("--yes",)])
def test_drop_of_an_unknown_collection_is_not_found(data_dir: Path, yes: tuple[str, ...]) -> None:
    missing = meshdex(data_dir, "drop", "-c", "nosuch", *yes)
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no collection named 'nosuch'")
    assert collections(data_dir) == ["notes", "other"]


def test_drop_names_its_collection(data_dir: Path) -> None:
    refused = meshdex(data_dir, "drop", "--yes")
    assert refused.returncode == 2
    assert "--collection" in refused.stderr
    assert collections(data_dir) == ["notes", "other"]


def test_drop_of_a_collection_a_peer_shares_is_refused_until_unshared(
        data_dir: Path, tmp_path: Path) -> None:
    """Dropped while a paired device shared it, the collection came back at the next sync;
    drop now says so and names the unshare, and drops once nobody shares it."""
    laptop = load_identity(tmp_path / "laptop")
    TrustStore(data_dir).add(make_peer(cert_pem=laptop.cert_pem.decode(), name="laptop",
                                       addresses=[], collections=["notes"], mode="read-write"))
    refused = meshdex(data_dir, "drop", "-c", "notes", "--yes")
    assert refused.returncode == 5, refused.stderr
    assert "collection 'notes' is shared with laptop" in refused.stderr
    assert "meshdex peer unshare laptop notes" in refused.stderr
    assert collections(data_dir) == ["notes", "other"]
    assert meshdex(data_dir, "drop", "-c", "other", "--yes").returncode == 0
    unshared = meshdex(data_dir, "peer", "unshare", "laptop", "notes")
    assert unshared.returncode == 0, unshared.stderr
    dropped = meshdex(data_dir, "drop", "-c", "notes", "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert collections(data_dir) == []
