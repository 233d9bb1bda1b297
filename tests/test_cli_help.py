"""Every CLI command explains itself with an example, and the README names every command."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from meshdex.node.cli.main import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in sorted(group.commands.items()):
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
