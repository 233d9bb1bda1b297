"""Every CLI command explains itself with an example, and the README names every command;
a command loads only its own module."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from meshdex.node.cli.main import COMMAND_MODULES, cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        path = (*prefix, name)
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, path))
        else:
            paths.append(path)
    return paths


COMMANDS = _command_paths(cli)


def test_the_cli_has_the_commands_the_issues_name():
    names = {path[0] for path in COMMANDS}
    assert {"init", "add", "list", "rm", "status", "build", "search", "stats", "demo", "serve",
            "token", "config", "bundle"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


@pytest.mark.parametrize("name", sorted({path[0] for path in COMMANDS}))
def test_the_readme_shows_every_top_level_command(name):
    assert f"meshdex {name}" in README


def test_the_lazy_command_table_names_every_command_of_every_module():
    """A command module added to the package, or a command added to a module's COMMANDS,
    without its line in COMMAND_MODULES would be a command `meshdex` never shows."""
    modules = sorted(path.stem for path in (ROOT / "node" / "cli").glob("*_cmds.py"))
    assert sorted(set(COMMAND_MODULES.values())) == modules
    for module_name in modules:
        module = importlib.import_module(f"meshdex.node.cli.{module_name}")
        assert sorted(command.name for command in module.COMMANDS) == sorted(
            name for name, owner in COMMAND_MODULES.items() if owner == module_name), module_name


def test_a_command_imports_its_own_module_and_not_the_others(tmp_path):
    """`meshdex list` starts without the gRPC server, bundle transfer, sync or MCP code."""
    script = ("import json, sys\n"
              "from meshdex.node.cli.main import cli\n"
              f"cli.main(['--data-dir', {str(tmp_path)!r}, 'list'], standalone_mode=False)\n"
              "print(json.dumps(sorted(sys.modules)))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    loaded = set(json.loads(run.stdout.splitlines()[-1]))
    assert {name for name in loaded if name.endswith("_cmds")} == {"meshdex.node.cli.docs_cmds"}
    assert not {"mcp", "meshdex.node.server", "meshdex.node.bundle_transfer",
                "meshdex.sync.admin", "pypdf"} & loaded


def test_the_cli_module_runs_as_a_script(tmp_path):
    run = subprocess.run([sys.executable, "-m", "meshdex.node.cli.main", "--version"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.startswith("meshdex, version")


def test_a_mistyped_command_names_the_closest_one():
    result = CliRunner().invoke(cli, ["serach", "how do I"])
    assert result.exit_code == 2
    assert "No such command 'serach'. Did you mean 'search'?" in result.output
    unknown = CliRunner().invoke(cli, ["zzzzzz"])
    assert unknown.exit_code == 2
    assert "No such command 'zzzzzz'." in unknown.output
    assert "Did you mean" not in unknown.output
