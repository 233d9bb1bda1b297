"""The ``meshdex`` click group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from meshdex import __version__
from meshdex.index import errors
from meshdex.node.cli.remote_options import REMOTE_OPTIONS
from meshdex.sync.errors import SyncError
from meshdex.sync.tls_policy import GRPC_VERBOSITY_ENV

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
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report a process the signal ended


def exit_code_for(error: errors.MeshdexError) -> int:
    """The exit code for an error: the entry of its nearest class in ``EXIT_CODES``."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def error_to_dict(error: errors.MeshdexError) -> dict[str, Any]:
    """An error as a --json command prints it on stdout, beside the one line main prints on
    stderr: {"ok": false, "error", "error_kind", "hint"}."""
    return {"ok": False, "error": error.message, "error_kind": type(error).__name__,
            "hint": error.hint}


# Every top-level command, by the module of this package whose ``COMMANDS`` defines it. A
# module is imported when one of its commands runs (or ``--help`` lists them all), not at every
# start: with every family imported (gRPC server, bundle transfer, MCP, sync), ``meshdex status``
# took 1.27 s, now 1.04 s with pypdf imported when a PDF is read (``bench/results/startup.md``).
# tests/test_cli_help.py fails when a module defines a command this table does not name.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("init", "add", "list", "docs", "rm", "drop", "status", "compact"),
                    "docs_cmds"),
    **dict.fromkeys(("build", "search", "stats", "demo"), "index_cmds"),
    **dict.fromkeys(("serve", "token", "config"), "serve_cmds"),
    "bundle": "bundle_cmds",
    **dict.fromkeys(("mcp", "ask", "watch"), "assist_cmds"),
    **dict.fromkeys(("id", "invite", "join", "peer", "peers", "sync", "conflicts"), "sync_cmds"),
    **dict.fromkeys(("show", "export"), "document_cmds"),
    "pin": "cache_cmds",
    "unpin": "cache_cmds",
}


class MeshdexGroup(click.Group):
    """Runs commands and turns ``MeshdexError`` into one line on stderr and an exit code;
    loads a command's module the first time the command is asked for (``COMMAND_MODULES``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"meshdex.node.cli.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.add_command(command)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        """A mistyped command names the closest one (``meshdex serach`` -> ``search``)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except errors.MeshdexError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(exit_code_for(error))
        except KeyboardInterrupt:
            # click's own answer is "Aborted!" and exit 1, which a script cannot tell from a
            # failure. Writes are committed batch by batch and an index is installed whole,
            # so what an interrupted command had committed stays.
            click.echo("\ninterrupted: stopped before finishing; what was already written is "
                       "kept", err=True)
            ctx.exit(EXIT_INTERRUPTED)


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


cli.params.extend(REMOTE_OPTIONS)


# gRPC core's verbosities that still print its ERROR lines; the package sets "ERROR" on import
# (``meshdex.sync.tls_policy``), and a meshdex process started by another inherits it.
GRPC_CORE_DEFAULT_VERBOSITIES = ("", "ERROR")


def silence_grpc_core() -> None:
    """Turn gRPC core's own log lines off for a command unless asked for (GRPC_VERBOSITY=INFO
    or DEBUG). Every failure core logs at ERROR also reaches meshdex as an exception and comes
    out as meshdex's one error line with a hint: `serve` on a port in use printed core's
    "Failed to add port to server" line first. Takes effect only before ``import grpc``,
    which no module imported so far does (command modules are imported when they run)."""
    if os.environ.get(GRPC_VERBOSITY_ENV, "").upper() in GRPC_CORE_DEFAULT_VERBOSITIES:
        os.environ[GRPC_VERBOSITY_ENV] = "NONE"


def main() -> None:
    """Console-script entry point."""
    silence_grpc_core()
    cli(prog_name="meshdex")


if __name__ == "__main__":
    main()
