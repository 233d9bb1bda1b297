"""Peer sync commands: ``id``, ``invite``, ``join``, ``peer add|rm``, ``peers``, ``sync``,
``conflicts``; and the companion that runs sync inside ``meshdex serve``.

Thin click layer over ``meshdex.sync``. Identity, trust and invites are files beside the
store, so every command but ``sync`` works while ``meshdex serve`` runs (the server picks
changes up on the next handshake); ``sync`` needs the store and says so when it is locked.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import click
from meshdex.index.errors import InvalidArgument
from meshdex.node.config import NodeConfig, load_config
from meshdex.node.paths import resolve_data_dir
from meshdex.node.service import Node
from meshdex.node.store import Store
from meshdex.sync.client import add_peer, join, run_session
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import SyncError
from meshdex.sync.identity import load_identity
from meshdex.sync.pairing import DEFAULT_INVITE_TTL_S, MAX_INVITE_TTL_S, InviteBook, InviteToken
from meshdex.sync.progress import FileProgress
from meshdex.sync.service import SyncService, advertised_addresses
from meshdex.sync.trust import Peer, TrustStore

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None, help="TOML config file (for sync_listen, pair_listen, sync_advertise).")
collections_option = click.option(
    "--collections", default="default", show_default=True,
    help="Comma-separated collections to share with the peer.")
read_only_option = click.option(
    "--read-only", is_flag=True,
    help="The peer may receive the shared collections but its changes are refused.")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _data_dir(ctx: click.Context) -> Path:
    return resolve_data_dir((ctx.find_root().obj or {}).get("data_dir"))


def _config(ctx: click.Context, config_path: Path | None) -> NodeConfig:
    return load_config(config_path=config_path,
                       flags={"data_dir": (ctx.find_root().obj or {}).get("data_dir")}).config


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def parse_duration_s(text: str) -> float:
    """``"10m"`` → 600.0; plain numbers are seconds."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidArgument(f"invalid duration {text!r}: use e.g. 90s, 10m, 2h, 1d")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_INVITE_TTL_S:
        raise InvalidArgument(f"--ttl must be between 1 s and {MAX_INVITE_TTL_S / 86400:.0f} "
                              f"days, got {text!r}")
    return seconds


def _collections(text: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in text.split(",") if name.strip()}))
    if not names:
        raise InvalidArgument("--collections needs at least one collection name")
    return names


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "never"


@click.command("id")
@json_option
@click.pass_context
def id_command(ctx: click.Context, as_json: bool) -> None:
    """Print this device's id (created with its key on first use); give it to peers.

    \b
    Example:
      meshdex id
    """
    identity = load_identity(_data_dir(ctx))
    if as_json:
        _print_json({"device_id": str(identity.device_id),
                     "certificate": str(identity.cert_path)})
        return
    click.echo(str(identity.device_id))


@click.command("invite")
@collections_option
@read_only_option
@click.option("--ttl", default=f"{DEFAULT_INVITE_TTL_S / 60:.0f}m", show_default=True,
              help="How long the invite can be redeemed (e.g. 90s, 10m, 2h).")
@config_option
@click.pass_context
def invite_command(ctx: click.Context, collections: str, read_only: bool, ttl: str,
                   config_path: Path | None) -> None:
    """Print a one-time invite token for another device to `meshdex join`.

    The token holds this device's id, the address of its pairing listener and a secret;
    `meshdex serve` must be running here when the other device joins.

    \b
    Example:
      meshdex invite --collections default,papers --ttl 10m
      meshdex invite --read-only
    """
    config = _config(ctx, config_path)
    if not config.pair_listen:
        raise InvalidArgument("pairing is turned off (pair_listen is empty)",
                              hint="set pair_listen, e.g. 0.0.0.0:7712 on a LAN node")
    identity = load_identity(config.data_dir)
    invite = InviteBook(config.data_dir).create(collections=_collections(collections),
                                                read_only=read_only, ttl_s=parse_duration_s(ttl))
    token = InviteToken(device_id=identity.device_id, invite_id=invite.invite_id,
                        secret=invite.secret,
                        pair_addresses=advertised_addresses(config, config.pair_listen),
                        sync_addresses=advertised_addresses(config, config.sync_listen))
    click.echo(token.encode())
    mode = "read-only" if read_only else "read-write"
    click.echo(f"one-time invite for {', '.join(invite.collections)} ({mode}), valid until "
               f"{_when(invite.expires_at)}; on the other device run: meshdex join TOKEN",
               err=True)


@click.command("join")
@click.argument("token")
@click.option("--name", default=None, help="How the other device will call this one "
              "(default: this machine's hostname).")
@config_option
@click.pass_context
def join_command(ctx: click.Context, token: str, name: str | None,
                 config_path: Path | None) -> None:
    """Pair with the device that printed TOKEN (`meshdex invite` there).

    Verifies that device's certificate against the id in the token, proves this side holds
    the token's secret without sending it, and records the pairing on both devices.

    \b
    Example:
      meshdex join mdxi_eyJ2IjoxLCJkIjoi...
    """
    config = _config(ctx, config_path)
    peer = join(config.data_dir, token, name=name,
                addresses=advertised_addresses(config, config.sync_listen))
    click.echo(f"paired with {peer.name} ({peer.device_id}); sharing "
               f"{', '.join(peer.collections)}")


@click.group("peer")
def peer_group() -> None:
    """Pair with a device by hand, or forget one.

    \b
    Example:
      meshdex peer add MFZWI3D-BONSGYC-... 192.168.1.20:7711 --collections default
      meshdex peer rm MFZWI3D-BONSGYC-...
    """


@peer_group.command("add")
@click.argument("device_id")
@click.argument("address", metavar="HOST:PORT")
@collections_option
@read_only_option
@click.option("--name", default="", help="A name to recognise the peer by.")
@click.pass_context
def peer_add_command(ctx: click.Context, device_id: str, address: str, collections: str,
                     read_only: bool, name: str) -> None:
    """Trust DEVICE_ID at HOST:PORT (its sync listener); the other side must add this one too.

    The certificate served at HOST:PORT must hash to DEVICE_ID, or nothing is recorded.

    \b
    Example:
      meshdex peer add MFZWI3D-BONSGYC-... 192.168.1.20:7711 --collections default,papers
    """
    peer = add_peer(_data_dir(ctx), device_id, address, collections=_collections(collections),
                    read_only=read_only, name=name)
    click.echo(f"added peer {peer.name} ({peer.device_id}) at {address}, sharing "
               f"{', '.join(peer.collections)} ({peer.mode})")


@peer_group.command("rm")
@click.argument("device_id")
@click.pass_context
def peer_rm_command(ctx: click.Context, device_id: str) -> None:
    """Forget a peer: it is refused from its next call on, even on an open connection.

    \b
    Example:
      meshdex peer rm MFZWI3D-BONSGYC-...
    """
    from meshdex.sync.device_id import DeviceId

    peer = TrustStore(_data_dir(ctx)).remove(DeviceId.parse(device_id))
    click.echo(f"removed peer {peer.name} ({peer.device_id})")


def _lag(store: Store | None, progress: FileProgress, peer: Peer) -> int | None:
    """Changes in the shared collections the peer has not acknowledged (None: no store)."""
    if store is None:
        return None
    total = 0
    for name in peer.collections:
        ack = progress.get_ack(peer.device_id, name)
        total += sum(1 for _ in store.changes_since(ack, collection=name))
    return total


@click.command("peers")
@json_option
@click.pass_context
def peers_command(ctx: click.Context, as_json: bool) -> None:
    """List paired devices: id, name, address, shared collections, mode, last contact,
    changes they have not acknowledged (lag), last error.

    \b
    Example:
      meshdex peers
      meshdex peers --json
    """
    data_dir = _data_dir(ctx)
    peers = TrustStore(data_dir).all()
    progress = FileProgress(data_dir)
    store = Store.open(data_dir, readonly=True) if (data_dir / "store" / "data.mdb").exists() \
        else None
    try:
        rows = [{**{k: v for k, v in peer.to_dict().items() if k != "cert_pem"},
                 "lag": _lag(store, progress, peer)} for peer in peers]
    finally:
        if store is not None:
            store.close()
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no peers; pair with `meshdex invite` / `meshdex join`")
    for row in rows:
        address = ", ".join(row["addresses"]) or "(dials us)"
        lag = "?" if row["lag"] is None else row["lag"]
        click.echo(f"{row['device_id']}  {row['name']}  {address}  "
                   f"[{', '.join(row['collections'])}] {row['mode']}  "
                   f"last contact {_when(row['last_contact'])}, lag {lag}"
                   + (f", last error: {row['last_error']}" if row["last_error"] else ""))


@click.command("sync")
@click.option("--peer", "peer_id", default=None, help="Only this device id.")
@json_option
@click.pass_context
def sync_command(ctx: click.Context, peer_id: str | None, as_json: bool) -> None:
    """Sync now with every peer (or --peer ID): send and receive changes, print what moved.

    Needs the store: stop `meshdex serve` first, or let it sync (it does, continuously).

    \b
    Example:
      meshdex sync
      meshdex sync --peer MFZWI3D-BONSGYC-... --json
    """
    from meshdex.sync.device_id import DeviceId

    data_dir = _data_dir(ctx)
    trust = TrustStore(data_dir)
    peers = [trust.get(DeviceId.parse(peer_id))] if peer_id else trust.all()
    identity = load_identity(data_dir)
    with Node.open(data_dir) as node:
        engine = SyncEngine(node=node, identity=identity, progress=FileProgress(data_dir))
        reports = [run_session(engine, identity, trust, peer) for peer in peers]
    if as_json:
        _print_json([report.to_dict() for report in reports])
    else:
        if not reports:
            click.echo("no peers to sync with")
        for report in reports:
            click.echo(f"{report.name} ({report.peer[:7]}): "
                       + (f"error: {report.error}" if report.error else "ok"))
            for item in report.collections:
                click.echo(f"  {item.collection}: received {item.received}, sent {item.sent}, "
                           f"conflicts {item.conflicts}"
                           + (f", error: {item.error}" if item.error else ""))
    if any(r.error or any(c.error for c in r.collections) for r in reports):
        raise SyncError("some peers could not be synced (see above)")


@click.command("conflicts")
@click.option("--collection", "-c", default=None, help="Only this collection.")
@json_option
@click.pass_context
def conflicts_command(ctx: click.Context, collection: str | None, as_json: bool) -> None:
    """List document versions that lost to a concurrent edit (kept, never dropped).

    \b
    Example:
      meshdex conflicts
      meshdex conflicts -c papers --json
    """
    records = FileProgress(_data_dir(ctx)).all_conflicts(collection)
    if as_json:
        _print_json([{k: v for k, v in vars(r).items()} for r in records])
        return
    if not records:
        click.echo("no conflicts")
    for record in records:
        click.echo(f"{record.collection}/{record.doc_id}: kept losing version "
                   f"{record.losing_hlc} (winner {record.winning_hlc}), "
                   f"{len(record.text or '')} chars, recorded {_when(record.recorded_at)}")


def sync_companion(node: Node, config: NodeConfig) -> SyncService | None:
    """Start peer sync inside ``meshdex serve``; a taken port turns sync off with a warning
    instead of refusing to serve the node's own API."""
    if not config.sync_listen and not config.pair_listen:
        return None
    service = SyncService(node, config)
    try:
        service.start()
    except SyncError as error:
        click.echo(f"warning: peer sync is off: {error}", err=True)
        return None
    click.echo(f"meshdex sync on {service.addresses.get('sync', 'off')} (pairing "
               f"{service.addresses.get('pairing', 'off')}); device {service.identity.device_id}",
               err=True)
    return service


COMMANDS = [id_command, invite_command, join_command, peer_group, peers_command, sync_command,
            conflicts_command]
