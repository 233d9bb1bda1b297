"""CLI: init, add, list, rm, status — output, --json, exit codes, one-line errors, and the real
``meshdex`` console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from lock_support import writer_lock_held
from meshdex.node.cli.docs_cmds import COMMANDS
from meshdex.node.cli.main import EXIT_PARTIAL_FAILURE, cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nAbout apples.")
    (docs / "b.txt").write_text("About bananas.")
    (docs / "c.png").write_bytes(b"\x89PNG")
    return docs


def run(data_dir: Path, *args: str):
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def test_add_then_status_list_and_rm(data_dir: Path, folder: Path) -> None:
    added = run(data_dir, "add", str(folder))
    assert added.exit_code == 0, added.output
    assert "created collection 'default' with default settings" in added.output
    assert "default: added 2, updated 0, unchanged 0" in added.output
    assert "skipped 1: unsupported type 1" in added.output

    again = run(data_dir, "add", str(folder))
    assert "added 0, updated 0, unchanged 2" in again.output

    status = json.loads(run(data_dir, "status", "--json").output)
    assert status["data_dir"] == str(data_dir)
    [default] = status["collections"]
    assert (default["name"], default["document_count"], default["passage_count"]) == (
        "default",
        2,
        2,
    )

    listed = json.loads(run(data_dir, "list", "--json").output)
    assert [c["name"] for c in listed] == ["default"]

    removed = run(data_dir, "rm", "notes/a.md")
    assert removed.exit_code == 0 and "deleted 1" in removed.output
    status_text = run(data_dir, "status").output
    assert "default: 1 documents, 1 passages, 1 deleted" in status_text


def test_init_options_and_duplicate(data_dir: Path) -> None:
    created = run(data_dir, "init", "-c", "papers", "--max-chars", "500", "--overlap-chars", "50")
    assert created.exit_code == 0
    assert "passages up to 500 chars, 50 overlap" in created.output
    info = json.loads(run(data_dir, "list", "--json").output)[0]
    assert info["chunking"] == {"max_chars": 500, "overlap_chars": 50}
    again = run(data_dir, "init", "-c", "papers")
    assert again.exit_code == 4
    assert again.output.strip() == "error: collection 'papers' already exists"


def test_init_http_embedder_is_opt_in_and_checked(data_dir: Path) -> None:
    ok = run(
        data_dir,
        "init",
        "-c",
        "remote",
        "--embedder",
        "http",
        "--embedder-url",
        "http://127.0.0.1:9/",
        "--embedder-model",
        "bge-small",
        "--json",
    )
    assert ok.exit_code == 0, ok.output
    spec = json.loads(ok.output)["embedder"]
    assert (spec["kind"], spec["url"], spec["model_id"]) == (
        "http",
        "http://127.0.0.1:9/",
        "bge-small",
    )
    no_url = run(data_dir, "init", "-c", "x", "--embedder", "http")
    assert no_url.exit_code == 2 and "needs a url" in no_url.output
    url_without_http = run(data_dir, "init", "-c", "y", "--embedder-url", "http://h")
    assert url_without_http.exit_code == 2 and "need --embedder http" in url_without_http.output
    # --precision was silently dropped for an http embedder; the collection recorded fp32
    precise = run(data_dir, "init", "-c", "z", "--embedder", "http", "--embedder-url",
                  "http://127.0.0.1:9/", "--precision", "bf16")
    assert precise.exit_code == 2 and "--precision is the local model's" in precise.output
    listed = run(data_dir, "list", "--json")
    assert "z" not in [entry["name"] for entry in json.loads(listed.output)], listed.output


def test_partial_failure_reports_each_bad_line_and_adds_the_rest(
    data_dir: Path, tmp_path: Path
) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        '{"id": "1", "text": "first"}\n{"id": "2", "text": ""}\n'
        '{"id": "3", "text": "third", "metadata": 5}\nnot json\n{"id": "5", "text": "fifth"}\n'
    )
    result = CliRunner().invoke(
        cli, ["--data-dir", str(data_dir), "add", "--jsonl", str(jsonl), "--json"]
    )
    assert result.exit_code == EXIT_PARTIAL_FAILURE
    summary = json.loads(result.stdout)
    assert summary["added"] == 2
    assert [e["origin"] for e in summary["errors"]] == [f"{jsonl}:{n}" for n in (2, 3, 4)]
    assert f"error: {jsonl}:4: the line is not valid JSON" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status"], 3, "no meshdex store in"),
        (["list"], 3, "no meshdex store in"),
        (["add"], 2, "give at least one PATH or --jsonl FILE"),
        (["init", "-c", "bad name"], 2, "invalid collection name 'bad name'"),
        (["init", "--max-chars", "10", "--overlap-chars", "10"], 2, "overlap_chars"),
    ],
)
def test_user_errors_are_one_line_and_exit_non_zero(
    data_dir: Path, args: list[str], code: int, message: str
) -> None:
    result = run(data_dir, *args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_rm_reports_missing_ids(data_dir: Path, folder: Path) -> None:
    run(data_dir, "add", str(folder))
    some = run(data_dir, "rm", "notes/a.md", "nope")
    assert some.exit_code == EXIT_PARTIAL_FAILURE
    assert "error: no document 'nope' in collection 'default'" in some.output
    none = run(data_dir, "rm", "nope")
    assert none.exit_code == 3
    missing_collection = run(data_dir, "rm", "-c", "ghost", "x")
    assert (
        missing_collection.exit_code == 3
        and "no collection named 'ghost'" in missing_collection.output
    )


def test_data_dir_from_environment(tmp_path: Path, folder: Path) -> None:
    env_dir = tmp_path / "from-env"
    result = CliRunner(env={"MESHDEX_DATA_DIR": str(env_dir)}).invoke(cli, ["add", str(folder)])
    assert result.exit_code == 0
    assert (env_dir / "store" / "data.mdb").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_has_help_with_an_example(command) -> None:
    result = CliRunner().invoke(cli, [command.name, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def meshdex(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("meshdex")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


def test_real_console_script_adds_and_reports_status(data_dir: Path, folder: Path) -> None:
    added = meshdex("--data-dir", str(data_dir), "add", str(folder))
    assert added.returncode == 0, added.stderr
    assert "added 2" in added.stdout
    status = meshdex("--data-dir", str(data_dir), "status", "--json")
    assert json.loads(status.stdout)["collections"][0]["document_count"] == 2


def test_real_console_script_refuses_a_second_writer(data_dir: Path, folder: Path) -> None:
    with writer_lock_held(data_dir) as holder:
        refused = meshdex("--data-dir", str(data_dir), "add", str(folder))
        assert refused.returncode == 5
        assert refused.stderr.strip() == (
            f"error: another process (pid {holder.pid}) is writing to the data directory "
            f"{data_dir} (path: {data_dir}) hint: wait for it to finish or stop it; read-only "
            "commands still work"
        )
        reader = meshdex("--data-dir", str(data_dir), "status", "--json")
        assert reader.returncode == 0, reader.stderr
    assert os.path.exists(data_dir / "writer.lock")
    assert meshdex("--data-dir", str(data_dir), "add", str(folder)).returncode == 0
