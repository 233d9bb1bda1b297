"""CLI remote mode: ``meshdex --node HOST:PORT ...`` talks to a running node instead of the store.

Commands call ``open_node(ctx)`` where they would call ``Node.open``: it yields the embedded
``Node`` normally, or a ``MeshdexClient`` (same method names, same records, same errors) when
``--node`` (or ``$MESHDEX_NODE``) is given, so a command prints the same output either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from meshdex.node.client import MeshdexClient
from meshdex.node.service import Node


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


def add_remote_options(group: click.Group) -> None:
    """Attach ``--node``, ``--token`` and ``--tls-ca`` to the top-level group."""
    group.params.extend(REMOTE_OPTIONS)


def remote_client(ctx: click.Context) -> MeshdexClient | None:
    """A client for ``--node``, or None when running embedded."""
    options = ctx.find_root().obj or {}
    address = options.get("node_address")
    if not address:
        return None
    return MeshdexClient(address, token=options.get("token"), tls_ca=options.get("tls_ca"))


@contextmanager
def open_node(ctx: click.Context, *, readonly: bool = False) -> Iterator[Node | MeshdexClient]:
    """The node a command talks to: remote with ``--node``, else the local data directory."""
    client = remote_client(ctx)
    if client is not None:
        with client:
            yield client
        return
    with Node.open((ctx.find_root().obj or {}).get("data_dir"), readonly=readonly) as node:
        yield node
