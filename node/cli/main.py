"""The ``meshdex`` click group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from meshdex import __version__
from meshdex.index import errors
from meshdex.sync.errors import SyncError

# One table from error class to exit code; the most specific class wins (MRO order).
EXIT_CODES: dict[type[errors.MeshdexError], int] = {
    errors.MeshdexError: 1,
    errors.InvalidArgument: 2,
    errors.NotFound: 3,
    errors.AlreadyExists: 4,
    errors.FailedPrecondition: 5,
    errors.ResourceExhausted: 6,
    errors.Unauthenticated: 7,
    errors.PermissionDenied: 7,
    errors.DeadlineExceeded: 8,
    errors.EmbedderError: 9,
    errors.BundleError: 10,
    SyncError: 12,  # a peer unreachable or misbehaving; sync kinds exit as their parent kind
}
EXIT_PARTIAL_FAILURE = 11  # some items went in, some were rejected (reported per item)


def exit_code_for(error: errors.MeshdexError) -> int:
    """The exit code for an error: the entry of its nearest class in ``EXIT_CODES``."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


class MeshdexGroup(click.Group):
    """Runs commands and turns ``MeshdexError`` into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except errors.MeshdexError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(exit_code_for(error))


@click.group(cls=MeshdexGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshdex")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MESHDEX_DATA_DIR",
    default=None,
    help="Where this device keeps its store and indexes "
    "(default: $XDG_DATA_HOME/meshdex, i.e. ~/.local/share/meshdex). Env: MESHDEX_DATA_DIR.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: int) -> None:
    """meshdex: a private semantic index that lives on your devices.

    \b
    Example:
      meshdex add ~/notes            # ingest a folder
      meshdex build                  # embed and index it
      meshdex search "how do I ..."  # ask it
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


def _register_commands() -> None:
    """Attach every command family to the group (one import per module that owns commands)."""
    from meshdex.node.cli import bundle_cmds, docs_cmds

    for command in docs_cmds.COMMANDS:
        cli.add_command(command)
    from meshdex.node.cli import serve_cmds  # serve, token, config; also the --node options

    serve_cmds.register(cli)
    cli.add_command(bundle_cmds.bundle)
    from meshdex.node.cli import index_cmds

    for command in index_cmds.COMMANDS:
        cli.add_command(command)
    from meshdex.node.cli import assist_cmds  # mcp, ask, watch

    for command in assist_cmds.COMMANDS:
        cli.add_command(command)
    from meshdex.node.cli import sync_cmds

    for command in sync_cmds.COMMANDS:
        cli.add_command(command)
    from meshdex.node.cli import cache_cmds

    for command in cache_cmds.COMMANDS:
        cli.add_command(command)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="meshdex")
