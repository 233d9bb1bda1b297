"""CLI remote mode: ``meshdex --node HOST:PORT ...`` talks to a running node instead of the store.

Commands call ``open_node(ctx)`` where they would call ``Node.open``: it yields the embedded
``Node`` normally, or a ``MeshdexClient`` (same method names, same records, same errors) when
``--node`` (or ``$MESHDEX_NODE``) is given, so a command prints the same output either way.
A command whose data directory is held by ``meshdex serve`` goes through that node
(``meshdex.node.local_endpoint``): a writing one instead of failing with ``StoreLocked``, a
reading one to use the node's loaded model (a search of 300 notes: 0.49 s instead of 1.6 s,
``bench/results/startup.md``).
The options themselves live in ``remote_options``, which the group loads at every start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import grpc
from grpc_health.v1.health_pb2 import HealthCheckRequest
from grpc_health.v1.health_pb2_grpc import HealthStub
from meshdex.index.errors import InvalidArgument
from meshdex.node.client import MeshdexClient
from meshdex.node.errors import StoreLocked
from meshdex.node.local_endpoint import LocalEndpoint, running_endpoint
from meshdex.node.paths import resolve_data_dir
from meshdex.node.service import Node
from meshdex.node.store import Store

logger = logging.getLogger(__name__)

# How long a command waits for a serving node's health check: a reading one then reads the
# store itself, so it gives up soon; a writing one cannot, so it waits longer before it fails.
READ_PROBE_S = 2.0
WRITE_PROBE_S = 10.0
ON_THE_NODES_MACHINE = "run it on the node's machine, without --node"


def remote_client(ctx: click.Context) -> MeshdexClient | None:
    """A client for ``--node``, or None when running embedded."""
    options = ctx.find_root().obj or {}
    address = options.get("node_address")
    if not address:
        return None
    return MeshdexClient(address, token=options.get("token"), tls_ca=options.get("tls_ca"))


def refuse_remote(ctx: click.Context, what: str, *, hint: str = ON_THE_NODES_MACHINE) -> None:
    """``InvalidArgument`` (``what``, ``hint``) when ``--node`` is given to a command that only
    works on this device: run anyway, it answered from the local data directory as if the
    node had, and the user who asked the node never knew."""
    if (ctx.find_root().obj or {}).get("node_address"):
        raise InvalidArgument(what, hint=hint)


def serving_node_client(data_dir: Path | str | None) -> MeshdexClient | None:
    """A client for the ``meshdex serve`` that holds ``data_dir`` now, if one does.

    Raises ``StoreLocked`` when that node does not answer a health check within
    ``WRITE_PROBE_S`` (stopped with ^Z or SIGSTOP, or stuck), naming it and how to go on, and
    with the lock error's exit code. Without the check a stopped node failed the command
    after gRPC's 20 s handshake timeout as "node unavailable ... check that `meshdex serve`
    runs", which it does, and one that accepts connections but answers nothing held it until
    the call's deadline (an ``add``: 10 minutes; a ``build``: none).
    """
    serving = _serving_node(data_dir, WRITE_PROBE_S)
    if serving is None:
        return None
    if serving.client is not None:
        return serving.client
    endpoint = serving.endpoint
    raise StoreLocked(
        f"`meshdex serve` (pid {endpoint.pid}) holds the data directory and does not answer at "
        f"{endpoint.address} ({serving.unanswered} after {WRITE_PROBE_S:.0f} s)",
        op="open", path=resolve_data_dir(data_dir),
        hint=f"if it was stopped (^Z), resume it (`fg` in its terminal, or kill -CONT "
             f"{endpoint.pid}); if it is stuck, stop it (kill {endpoint.pid}) and run this again")


def _reading_client(data_dir: Path | str | None) -> MeshdexClient | None:
    """A client for the serving node if it answers a health check within ``READ_PROBE_S``;
    else None, and a reading command reads the store itself rather than wait on a stuck node."""
    serving = _serving_node(data_dir, READ_PROBE_S)
    if serving is None:
        return None
    if serving.client is None:
        logger.warning("the serving node does not answer (%s): reading the store directly",
                       serving.unanswered)
    return serving.client


@dataclass(frozen=True)
class ServingNode:
    """The node serving a data directory: a client for it when it answered its health check,
    else None and how the check failed."""

    endpoint: LocalEndpoint
    client: MeshdexClient | None
    unanswered: str | None


def _serving_node(data_dir: Path | str | None, probe_s: float) -> ServingNode | None:
    """The node serving ``data_dir`` as probed within ``probe_s``; None when none serves it."""
    resolved = resolve_data_dir(data_dir)
    endpoint = running_endpoint(resolved)
    if endpoint is None:
        return None
    logger.info("%s is served by pid %d: going through it at %s", resolved, endpoint.pid,
                endpoint.address)
    client = MeshdexClient(endpoint.address, token=endpoint.token)
    try:
        HealthStub(client.channel).Check(HealthCheckRequest(), timeout=probe_s)
    except grpc.RpcError as error:
        client.close()
        return ServingNode(endpoint, None, error.code().name)
    return ServingNode(endpoint, client, None)


def beside_serving_node(error: StoreLocked, instead: str) -> StoreLocked:
    """``error`` for a command that cannot go through a node: when the holder is a serving
    node, saying so and what to do ``instead``."""
    endpoint = running_endpoint(Path(error.path)) if error.path else None
    if endpoint is None:
        return error
    return StoreLocked(f"`meshdex serve` (pid {endpoint.pid}) holds the data directory "
                       f"{error.path}, and this command needs it to itself", op=error.op,
                       path=error.path, hint=instead)


@contextmanager
def open_node(ctx: click.Context, *, readonly: bool = False,
              existing_store: bool = False) -> Iterator[Node | MeshdexClient]:
    """The node a command talks to: remote with ``--node``; else the node serving the local
    data directory, if one does; else the data directory itself.

    ``existing_store``: a command with nothing to do in an empty store (build, compact, pin)
    refuses a data directory without one (``NotFound``, as a reading command does) instead of
    creating it there, which a mistyped ``--data-dir`` did.
    """
    client = remote_client(ctx)
    if client is None:
        data_dir = (ctx.find_root().obj or {}).get("data_dir")
        if existing_store:
            Store.require_existing(resolve_data_dir(data_dir))
        if readonly:  # its model is loaded already: a search skips the load
            client = _reading_client(data_dir)
    if client is None:
        try:
            node = Node.open(data_dir, readonly=readonly)
        except StoreLocked:
            client = serving_node_client(data_dir)
            if client is None:
                raise
        else:
            with node:
                yield node
            return
    with client:
        yield client
