"""The global remote-mode options ``--node``, ``--token`` and ``--tls-ca``.

Apart from ``remote``, which imports the gRPC client and the embedded node: the group carries
these options at every start, and a command's module (with its imports) loads only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Store a global option in ``ctx.obj`` (the group's callback does not take it)."""
    ctx.ensure_object(dict)[param.name] = value
    return value


REMOTE_OPTIONS: list[click.Option] = [
    click.Option(
        ["--node", "node_address"], envvar="MESHDEX_NODE", default=None,
        expose_value=False, callback=_remember, metavar="HOST:PORT",
        help="Talk to a running node (`meshdex serve`) at HOST:PORT or unix:PATH instead of "
        "opening the data directory. Env: MESHDEX_NODE.",
    ),
    click.Option(
        ["--token"], envvar="MESHDEX_TOKEN", default=None, expose_value=False,
        callback=_remember,
        help="Bearer token for --node (from `meshdex token create`). Env: MESHDEX_TOKEN.",
    ),
    click.Option(
        ["--tls-ca"], envvar="MESHDEX_TLS_CA", default=None, expose_value=False,
        callback=_remember, type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="PEM CA certificate to verify --node's TLS certificate (a self-signed node's "
        "own certificate works). TLS is always used for non-loopback nodes. Env: MESHDEX_TLS_CA.",
    ),
]
