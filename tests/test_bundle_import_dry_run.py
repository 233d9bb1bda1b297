"""``meshdex bundle import --dry-run``: the decision and the action an import would take, with
nothing in the data directory changed; the real import that follows does what it said.

Real CLI processes, real LMDB and the real model. "Nothing changed" is a SHA-256 of every file
of the data directory, except the bytes of LMDB's lock file: that is LMDB's reader table, whose
slot every reader writes (``meshdex list`` and ``search`` do the same); its size is compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from meshdex.index.chunking import ChunkingParams
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

pytestmark = pytest.mark.model

COLLECTION = "notes"
DOCUMENTS = {
    "pasta": "Cook the spaghetti in salted boiling water for nine minutes, then drain it.",
    "bread": "Knead the dough for ten minutes and let it rise overnight in a cool place.",
    "tea": "Steep green tea at eighty degrees for two minutes so it does not turn bitter.",
}
LMDB_LOCK_FILE = "lock.mdb"
COMPARED = ("decision", "reasons", "drop_cache", "action", "created_collection",
            "documents_merged", "passages_missing")


def meshdex(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshdex", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): (f"{path.stat().st_size} bytes"
                                      if path.name == LMDB_LOCK_FILE
                                      else hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(root.rglob("*")) if path.is_file()
    }


def _add(data_dir: Path, documents: dict[str, str], collection: str = COLLECTION,
         **create) -> None:
    with Node.open(data_dir) as node:
        node.create_collection(collection, **create)
        node.upsert_documents(
            collection, [DocumentInput(id=doc_id, text=text) for doc_id, text in documents.items()])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, real_embedder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exporter")
    data = root / "data"
    _add(data, DOCUMENTS)
    with Node.open(data) as node:
        node.build(COLLECTION)
    paths = {"full": root / "full.leann", "plain": root / "plain.leann"}
    for name, extra in (("full", ["--with-documents"]), ("plain", [])):
        result = meshdex(data, "bundle", "export", "-c", COLLECTION, *extra, str(paths[name]))
        assert result.returncode == 0, result.stderr
    return paths


def _nothing(data_dir: Path, bundles: dict[str, Path]) -> None:
    """A fresh device: no data directory at all."""


def _other_collection(data_dir: Path, bundles: dict[str, Path]) -> None:
    _add(data_dir, {"chess": "Castle early to keep your king safe."}, collection="games")


def _newer_local_documents(data_dir: Path, bundles: dict[str, Path]) -> None:
    _add(data_dir, {**DOCUMENTS, "chess": "Castle early to keep your king safe."})


def _already_imported(data_dir: Path, bundles: dict[str, Path]) -> None:
    assert meshdex(data_dir, "bundle", "import", str(bundles["full"])).returncode == 0


def _other_chunking(data_dir: Path, bundles: dict[str, Path]) -> None:
    _add(data_dir, DOCUMENTS, chunking=ChunkingParams(max_chars=300, overlap_chars=50))


Setup = Callable[[Path, dict[str, Path]], None]


@pytest.mark.parametrize("setup, bundle, expected", [
    (_nothing, "full", ("use", "installed", True, 3, 0)),
    (_nothing, "plain", ("use", "installed", True, 0, 3)),
    (_other_collection, "full", ("use", "installed", True, 3, 0)),
    (_newer_local_documents, "full", ("apply_local_delta", "installed+delta", False, 0, 0)),
    (_already_imported, "full", ("use", "kept", False, 0, 0)),
    (_other_chunking, "plain", ("rebuild_locally", "rebuilt", False, 0, 0)),
], ids=lambda value: getattr(value, "__name__", None))
def test_a_dry_run_changes_nothing_and_the_import_does_what_it_said(
    bundles, tmp_path: Path, setup: Setup, bundle: str, expected: tuple
):
    data = tmp_path / "data"
    setup(data, bundles)
    before = tree_digest(data) if data.exists() else None

    dry = meshdex(data, "bundle", "import", "--dry-run", "--json", str(bundles[bundle]))
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] is True
    assert (plan["decision"], plan["action"], plan["created_collection"],
            plan["documents_merged"], plan["passages_missing"]) == expected
    assert (tree_digest(data) if data.exists() else None) == before

    real = meshdex(data, "bundle", "import", "--json", str(bundles[bundle]))
    assert real.returncode == 0, real.stderr
    done = json.loads(real.stdout)
    assert done["dry_run"] is False
    assert {key: done[key] for key in COMPARED} == {key: plan[key] for key in COMPARED}
    if plan["action"] == "kept":
        assert plan["generation"] == done["generation"] == 1


def test_a_dry_run_says_it_was_one_and_what_the_import_would_do(bundles, tmp_path: Path):
    data = tmp_path / "fresh"
    result = meshdex(data, "bundle", "import", "--dry-run", str(bundles["full"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "dry run: nothing was changed; importing this bundle would do this",
        "decision: use",
        "  - same collection, embedder, build params and store state",
        "would create collection notes from the bundle's config",
        "would merge 3 documents carried by the bundle",
        "would be installed: collection notes",
    ]
    assert not data.exists()
