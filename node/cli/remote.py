"""CLI remote mode: ``meshdex --node HOST:PORT ...`` talks to a running node instead of the store.

Commands call ``open_node(ctx)`` where they would call ``Node.open``: it yields the embedded
``Node`` normally, or a ``MeshdexClient`` (same method names, same records, same errors) when
``--node`` (or ``$MESHDEX_NODE``) is given, so a command prints the same output either way.
The options themselves live in ``remote_options``, which the group loads at every start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from meshdex.node.client import MeshdexClient
from meshdex.node.service import Node


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
