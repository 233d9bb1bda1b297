"""``meshdex bundle inspect`` and ``verify``: what a person sees, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_samples import make_manifest, small_sections
from click.testing import CliRunner
from meshdex.index.bundle_format import encode_bundle
from meshdex.index.bundle_io import open_bundle, write_bundle
from meshdex.index.bundle_manifest import CacheManifest
from meshdex.index.errors import BundleError, NotFound
from meshdex.node.cli.main import EXIT_CODES, cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bundle_path(tmp_path: Path) -> Path:
    path = tmp_path / "notes.leann"
    write_bundle(path, make_manifest(generation=3, parent_generation=2), small_sections())
    return path


def _flip_in_section(path: Path, name: str) -> None:
    with open_bundle(path) as bundle:
        offset = bundle.manifest.section_entry(name).offset
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(data)


def _assert_one_line_error(result, exit_code: int, phrase: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0]
    assert "Traceback" not in result.stderr


def test_inspect_shows_what_the_bundle_holds(runner: CliRunner, bundle_path: Path):
    result = runner.invoke(cli, ["bundle", "inspect", str(bundle_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "collection  notes" in out
    assert "generation  3 (parent 2)" in out
    assert "sentence-transformers/all-MiniLM-L6-v2 fp32, dim 384, cosine" in out
    assert "laptop: 120" in out and "desktop: 40" in out
    assert "12 nodes, same embedder as the graph" in out
    for name in small_sections():
        assert name in out


def test_inspect_warns_about_a_cache_from_another_embedder(runner: CliRunner, tmp_path: Path):
    path = tmp_path / "stale.leann"
    write_bundle(
        path,
        make_manifest(cache=CacheManifest(node_count=4, fingerprint_digest="f" * 64)),
        small_sections(),
    )
    result = runner.invoke(cli, ["bundle", "inspect", str(path)])
    assert "from ANOTHER embedder (will be dropped)" in result.stdout


def test_inspect_json_carries_the_whole_manifest(runner: CliRunner, bundle_path: Path):
    result = runner.invoke(cli, ["bundle", "inspect", str(bundle_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    with open_bundle(bundle_path) as bundle:
        manifest = bundle.manifest
    assert data["size_bytes"] == bundle_path.stat().st_size
    assert data["manifest"]["bundle_id"] == manifest.bundle_id
    assert data["manifest"]["fingerprint"]["model_hash"] == "a" * 64
    assert data["manifest"]["store_state"]["seq_watermarks"] == {"desktop": 40, "laptop": 120}
    assert [s["sha256"] for s in data["manifest"]["sections"]] == [
        e.sha256.hex() for e in manifest.sections
    ]


def test_verify_passes_a_whole_bundle(runner: CliRunner, bundle_path: Path):
    result = runner.invoke(cli, ["bundle", "verify", str(bundle_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {bundle_path} is whole")
    result = runner.invoke(cli, ["bundle", "verify", str(bundle_path), "--json"])
    assert json.loads(result.stdout)["ok"] is True


def test_verify_names_the_tampered_section(runner: CliRunner, bundle_path: Path):
    _flip_in_section(bundle_path, "graph_neighbors")
    result = runner.invoke(cli, ["bundle", "verify", str(bundle_path)])
    _assert_one_line_error(
        result, EXIT_CODES[BundleError], "section 'graph_neighbors' does not match its SHA-256"
    )
    # inspect reads only the structure, so it still describes the damaged bundle
    assert runner.invoke(cli, ["bundle", "inspect", str(bundle_path)]).exit_code == 0


def test_verify_json_says_a_tampered_bundle_failed_and_why(tmp_path: Path, bundle_path: Path):
    _flip_in_section(bundle_path, "graph_neighbors")
    plain, as_json = (
        subprocess.run([sys.executable, "-m", "meshdex", "bundle", "verify", str(bundle_path),
                        *extra], capture_output=True, text=True, timeout=120)
        for extra in ([], ["--json"]))
    assert as_json.returncode == plain.returncode == EXIT_CODES[BundleError]
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["path"] == str(bundle_path)
    assert "section 'graph_neighbors' does not match its SHA-256" in report["error"]
    assert as_json.stderr == plain.stderr


def test_inspect_help_example_reads_the_fingerprint(tmp_path: Path, bundle_path: Path):
    """The help's ``jq`` path, followed in the JSON inspect prints, reaches the fingerprint."""
    help_text = CliRunner().invoke(cli, ["bundle", "inspect", "--help"]).output
    example = re.search(r"--json \| jq (\S+)", help_text)
    assert example, help_text
    shown = json.loads(CliRunner().invoke(cli, ["bundle", "inspect", str(bundle_path),
                                                "--json"]).stdout)
    for key in example.group(1).strip(".").split("."):
        shown = shown[key]
    assert shown["model_id"] and shown["model_hash"]


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_truncated_bundle_is_one_line_error(runner: CliRunner, bundle_path: Path, command: str):
    bundle_path.write_bytes(bundle_path.read_bytes()[:5000])
    result = runner.invoke(cli, ["bundle", command, str(bundle_path)])
    _assert_one_line_error(result, EXIT_CODES[BundleError], "cut short inside section")


@pytest.mark.parametrize("damage", ["truncated", "tampered"])
def test_a_damaged_bundle_imported_into_a_new_data_dir_leaves_nothing_behind(
        runner: CliRunner, bundle_path: Path, tmp_path: Path, damage: str):
    """Importing a damaged file made the data directory and an empty store before the bundle
    was read, so the failed import left a store a later command took for a real one."""
    if damage == "truncated":
        bundle_path.write_bytes(bundle_path.read_bytes()[:8])
    else:
        _flip_in_section(bundle_path, "codes")
    data_dir = tmp_path / "new-device"
    result = runner.invoke(cli, ["--data-dir", str(data_dir), "bundle", "import",
                                 str(bundle_path)])
    _assert_one_line_error(result, EXIT_CODES[BundleError], str(bundle_path))
    assert not data_dir.exists()


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_newer_format_is_refused_naming_both_versions(
    runner: CliRunner, tmp_path: Path, command: str
):
    path = tmp_path / "future.leann"
    encoded = encode_bundle(make_manifest(), small_sections(), format_version=5)
    path.write_bytes(b"".join(bytes(chunk) for chunk in encoded.chunks))
    result = runner.invoke(cli, ["bundle", command, str(path)])
    _assert_one_line_error(
        result, EXIT_CODES[BundleError], "format version 5 is newer than this meshdex reads"
    )


def test_missing_file_is_not_found(runner: CliRunner, tmp_path: Path):
    result = runner.invoke(cli, ["bundle", "verify", str(tmp_path / "absent.leann")])
    _assert_one_line_error(result, EXIT_CODES[NotFound], "no bundle file there")


@pytest.mark.parametrize("args", [["bundle"], ["bundle", "inspect"], ["bundle", "verify"]])
def test_every_bundle_command_has_an_example(runner: CliRunner, args: list[str]):
    result = runner.invoke(cli, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.stdout
