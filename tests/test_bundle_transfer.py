"""``meshdex bundle export`` / ``import`` between real data directories, with the real model.

Device A builds a small collection and exports it (with and without its documents); other
devices import it and must end up using, delta-updating or rebuilding the index as the
compatibility decision says, and search must give the same answers as on A.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_samples import make_manifest, small_sections
from click.testing import CliRunner
from meshdex.index.bundle_io import open_bundle, write_bundle
from meshdex.index.chunking import ChunkingParams
from meshdex.index.embedders import EmbedderSpec
from meshdex.index.embedders_local import PRECISIONS
from meshdex.index.errors import BundleError, FailedPrecondition, IndexNotBuilt
from meshdex.node.cli.main import EXIT_CODES, cli, exit_code_for
from meshdex.node.records import DocumentInput
from meshdex.node.service import Node

pytestmark = pytest.mark.model

COLLECTION = "notes"
DOCUMENTS = {
    "pasta": "Cook the spaghetti in salted boiling water for nine minutes, then drain it.",
    "bread": "Knead the dough for ten minutes and let it rise overnight in a cool place.",
    "bikes": "Pump the bicycle tyres to the pressure printed on the sidewall before a ride.",
    "tea": "Steep green tea at eighty degrees for two minutes so it does not turn bitter.",
    "garden": "Water the tomato plants at their base early in the morning, not on the leaves.",
}
QUERIES = ("how long do I boil noodles", "what temperature for green tea", "tyre pressure")


def _add(data_dir: Path, documents: dict[str, str], **create) -> None:
    with Node.open(data_dir) as node:
        if not any(info.name == COLLECTION for info in node.list_collections()):
            node.create_collection(COLLECTION, **create)
        node.upsert_documents(
            COLLECTION, [DocumentInput(id=doc_id, text=text) for doc_id, text in documents.items()]
        )


def _top_documents(data_dir: Path) -> list[str | None]:
    with Node.open(data_dir, readonly=True) as node:
        results = [node.search(COLLECTION, query, top_k=1).hits for query in QUERIES]
    return [hits[0].document_id if hits else None for hits in results]


def _run(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def device_a(tmp_path_factory, real_embedder) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("device_a")
    data = root / "data"
    _add(data, DOCUMENTS)
    with Node.open(data) as node:
        node.build(COLLECTION)
    full, plain = root / "full.leann", root / "plain.leann"
    for path, extra in ((full, ["--with-documents"]), (plain, [])):
        result = _run("--data-dir", str(data), "bundle", "export", "-c", COLLECTION, *extra,
                      str(path))
        assert result.exit_code == 0, result.output
    return {"data": data, "full": full, "plain": plain}


def test_export_writes_a_verified_bundle_that_says_what_it_carries(device_a):
    with open_bundle(device_a["full"]) as bundle:
        assert bundle.has_section("documents")
        assert bundle.manifest.collection_config["chunking"] == ChunkingParams().to_dict()
    with open_bundle(device_a["plain"]) as bundle:
        assert not bundle.has_section("documents")
    assert _run("bundle", "verify", str(device_a["full"])).exit_code == 0


def test_device_with_nothing_gets_the_whole_collection(device_a, tmp_path: Path):
    data = tmp_path / "b"
    result = _run("--data-dir", str(data), "bundle", "import", str(device_a["full"]))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "decision: use"
    assert "created collection notes from the bundle's config" in result.stdout
    assert "merged 5 documents carried by the bundle" in result.stdout
    assert "installed: collection notes generation 1" in result.stdout
    assert _top_documents(data) == _top_documents(device_a["data"]) == ["pasta", "tea", "bikes"]


def test_importing_the_same_bundle_again_keeps_the_installed_index(device_a, tmp_path: Path):
    """It installed a new generation on every import of the same file."""
    data = tmp_path / "again"
    first = _run("--data-dir", str(data), "bundle", "import", str(device_a["full"]))
    assert first.exit_code == 0, first.output
    again = _run("--data-dir", str(data), "bundle", "import", "--json", str(device_a["full"]))
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["action"], report["generation"], report["documents_merged"]) == (
        "kept", 1, 0)
    assert _top_documents(data) == ["pasta", "tea", "bikes"]
    shown = _run("--data-dir", str(data), "bundle", "import", str(device_a["full"]))
    assert "already holds everything this bundle indexes: kept it" in shown.stdout


def test_local_documents_newer_applies_the_delta(device_a, tmp_path: Path):
    data = tmp_path / "c"
    _add(data, {**DOCUMENTS, "chess": "Castle early in a chess game to keep your king safe."})
    result = _run("--data-dir", str(data), "bundle", "import", "--json", str(device_a["full"]))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["decision"], report["action"]) == ("apply_local_delta", "installed+delta")
    assert "local store has changes the bundle lacks" in report["reasons"][0]
    with Node.open(data, readonly=True) as node:
        hits = node.search(COLLECTION, "protect the king in chess", top_k=1).hits
        assert node.indexes.manifest(COLLECTION).generation == 2
    assert hits[0].document_id == "chess"


def test_bundle_without_documents_says_they_are_missing_instead_of_serving_holes(
    device_a, tmp_path: Path
):
    data = tmp_path / "d"
    result = _run("--data-dir", str(data), "bundle", "import", str(device_a["plain"]))
    assert result.exit_code == 0, result.output
    assert "documents missing here" in result.stdout
    assert "5 indexed passages are not in this store yet" in result.stdout
    assert _top_documents(data) == [None, None, None]
    # no build can bring the documents: status does not ask for one (it did, forever)
    status = _run("--data-dir", str(data), "status")
    assert "indexes documents not in this store yet" in status.stdout, status.stdout
    assert "run meshdex build" not in status.stdout


def test_other_chunking_rebuilds_from_local_documents(device_a, tmp_path: Path):
    data = tmp_path / "e"
    _add(data, DOCUMENTS, chunking=ChunkingParams(max_chars=300, overlap_chars=50))
    result = _run("--data-dir", str(data), "bundle", "import", str(device_a["plain"]))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:3] == [
        "decision: rebuild_locally",
        "  - the bundle's passages were cut differently: max_chars: 1200 != 300, "
        "overlap_chars: 150 != 50",
        "  - rebuilding from the local documents",
    ]
    assert "rebuilt: collection notes generation 1" in result.stdout
    assert _top_documents(data) == ["pasta", "tea", "bikes"]


def test_a_bundle_built_at_another_precision_is_rebuilt_not_served(device_a, tmp_path: Path):
    """Device A's collection took the default precision (bf16); a collection that recomputes
    in the other one must not search A's codes with its own vectors: it rebuilds."""
    theirs = EmbedderSpec().precision
    ours = next(precision for precision in PRECISIONS if precision != theirs)
    data = tmp_path / "f"
    _add(data, DOCUMENTS, embedder=EmbedderSpec(precision=ours))
    result = _run("--data-dir", str(data), "bundle", "import", "--json", str(device_a["plain"]))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["decision"], report["action"]) == ("rebuild_locally", "rebuilt")
    assert f"embedded differently: precision: {theirs} != {ours}" in report["reasons"][0]
    with Node.open(data, readonly=True) as node:
        assert node.indexes.manifest(COLLECTION).fingerprint.precision == ours
    assert _top_documents(data) == ["pasta", "tea", "bikes"]


def test_damaged_bundle_is_refused_and_changes_nothing(device_a, tmp_path: Path):
    damaged = tmp_path / "damaged.leann"
    data = bytearray(device_a["full"].read_bytes())
    data[-10] ^= 0x01
    damaged.write_bytes(data)
    result = _run("--data-dir", str(tmp_path / "f"), "bundle", "import", str(damaged))
    assert result.exit_code == EXIT_CODES[BundleError]
    assert result.stderr.count("\n") == 1 and "does not match its SHA-256" in result.stderr
    assert not (tmp_path / "f").exists(), "a refused import made a data directory"
    _add(tmp_path / "f", {"one": "a device with documents already"})
    refused = _run("--data-dir", str(tmp_path / "f"), "bundle", "import", str(damaged))
    assert refused.exit_code == EXIT_CODES[BundleError]
    with Node.open(tmp_path / "f", readonly=True) as node:
        assert [info.name for info in node.list_collections()] == [COLLECTION]
        assert node.get_collection(COLLECTION).document_count == 1


def test_export_before_any_build_is_a_one_line_error(tmp_path: Path):
    data = tmp_path / "g"
    _add(data, {"one": "a single short document"})
    result = _run("--data-dir", str(data), "bundle", "export", "-c", COLLECTION,
                  str(tmp_path / "x.leann"))
    assert result.exit_code == exit_code_for(IndexNotBuilt("x"))
    assert result.stderr.startswith("error: collection 'notes' has no index to export yet")
    assert not (tmp_path / "x.leann").exists()


def test_export_notes_when_the_index_lags_the_documents(device_a, tmp_path: Path):
    data = tmp_path / "h"
    result = _run("--data-dir", str(data), "bundle", "import", str(device_a["full"]))
    assert result.exit_code == 0, result.output
    _add(data, {"late": "A document added after the index was built."})
    result = _run("--data-dir", str(data), "bundle", "export", "-c", COLLECTION, "--json",
                  str(tmp_path / "y.leann"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stale"].startswith("the index is older than the documents")


def test_bundle_never_creates_a_collection_that_sends_text_off_the_device(tmp_path: Path):
    path = tmp_path / "remote.leann"
    config = {
        "embedder": {"kind": "http", "url": "http://203.0.113.9:8080", "model_id": "m"},
        "chunking": ChunkingParams().to_dict(),
    }
    write_bundle(path, make_manifest(collection=COLLECTION, collection_config=config),
                 small_sections())
    result = _run("--data-dir", str(tmp_path / "i"), "bundle", "import", str(path))
    assert result.exit_code == exit_code_for(FailedPrecondition("x"))
    assert "would send passage text off this device" in result.stderr
    assert "--embedder http" in result.stderr
    with Node.open(tmp_path / "i", readonly=True) as node:
        assert node.list_collections() == []
