"""Peer sync commands: ``id``, ``invite``, ``join``, ``peer add|share|unshare|rm``, ``peers``,
``sync``, ``conflicts``; and the companion that runs sync inside ``meshdex serve``.

Thin click layer over ``meshdex.sync.admin.SyncAdmin``: embedded on the data directory, or
through ``--node`` on a serving node (``MeshdexSyncAdmin``), printing the same either way.
Identity, trust and invites are files beside the store, so embedded commands other than
``sync`` work even while ``meshdex serve`` runs (it picks changes up on the next handshake).
``id``, ``peers`` and ``conflicts`` only read those files and the store (LMDB has concurrent
readers), so beside a serving node they read them themselves: one stopped with ^Z cannot hold
them (they waited 10 s for its health check and failed, exit 5).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import grpc
from meshdex.index.errors import InvalidArgument, MeshdexError
from meshdex.node.cli.docs_cmds import counted
from meshdex.node.cli.main import error_to_dict
from meshdex.node.cli.remote import remote_client, serving_node_client
from meshdex.node.config import NodeConfig, load_config
from meshdex.node.records import ChangeOp, NodeStatus, PeerStatus
from meshdex.node.service import Node
from meshdex.sync.admin import LocalSyncAdmin, SyncAdmin, conflict_to_dict, device_label
from meshdex.sync.admin_service import SyncAdminClient, add_admin_service
from meshdex.sync.client import IndexOutcome, SessionReport
from meshdex.sync.errors import SyncError
from meshdex.sync.one_shot import INDEX_FAILED, NOT_BUILT
from meshdex.sync.pairing import DEFAULT_INVITE_TTL_S, MAX_INVITE_TTL_S
from meshdex.sync.service import SyncService

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML config file (sync_listen, pair_listen, sync_advertise, index_policy, ...).")
collections_option = click.option(
    "--collections", default="default", show_default=True,
    help="Comma-separated collections to share with the peer.")
read_only_option = click.option(
    "--read-only", is_flag=True,
    help="The peer may receive the shared collections but its changes are refused.")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _config(ctx: click.Context, config_path: Path | None) -> NodeConfig:
    return load_config(config_path=config_path,
                       flags={"data_dir": (ctx.find_root().obj or {}).get("data_dir")}).config


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def json_errors(as_json: bool) -> Iterator[None]:
    """With --json, an error raised inside is printed as JSON on stdout too, so a script
    reading stdout learns what failed; main then prints its one line and exits with its
    code, as without --json."""
    try:
        yield
    except MeshdexError as error:
        if as_json:
            _print_json(error_to_dict(error))
        raise


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


def note_not_held(admin: SyncAdmin, collections: tuple[str, ...]) -> None:
    """Say which of ``collections`` this device does not hold. Sharing one is allowed (it
    arrives from the peer if the peer holds it, as `peer share` documents), but a mistyped
    name was taken without a word and nothing ever moved."""
    held = admin.collection_names()
    missing = [name for name in collections if name not in held]
    if missing:
        click.echo(f"note: {', '.join(map(repr, missing))} not on this device (it holds "
                   f"{', '.join(held) or 'no collection'}); shared anyway: it arrives from the "
                   f"peer if the peer holds it, else nothing moves", err=True)


@contextmanager
def open_admin(ctx: click.Context, config_path: Path | None = None, *,
               reading: bool = False) -> Iterator[SyncAdmin]:
    """The node's sync admin through ``--node``; else, for a command that changes something,
    that of the ``meshdex serve`` holding this data directory, so its sessions, listeners and
    trust see the change at once; else (and for a ``reading`` one) this data directory's."""
    client = remote_client(ctx)
    if client is None:
        config = _config(ctx, config_path)
        client = None if reading else serving_node_client(config.data_dir)
        if client is None:
            yield LocalSyncAdmin(config)
            return
    with client:
        yield SyncAdminClient(client)


@click.command("id")
@json_option
@click.pass_context
def id_command(ctx: click.Context, as_json: bool) -> None:
    """Print this device's id (created with its key on first use); give it to peers.

    \b
    Example:
      meshdex id
    """
    with json_errors(as_json), open_admin(ctx, reading=True) as admin:
        device_id = admin.device_id()
    if as_json:
        _print_json({"device_id": device_id})
        return
    click.echo(device_id)


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
    with open_admin(ctx, config_path) as admin:
        invite = admin.create_invite(collections=_collections(collections),
                                     read_only=read_only, ttl_s=parse_duration_s(ttl))
        note_not_held(admin, invite.collections)
    click.echo(invite.token)
    mode = "read-only" if invite.read_only else "read-write"
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
    with open_admin(ctx, config_path) as admin:
        peer = admin.join(token, name=name)
    click.echo(f"paired with {peer.name} ({peer.device_id}); sharing "
               f"{', '.join(peer.collections)}")
    if not peer.addresses:
        click.echo(f"note: {peer.name} gave no sync address this device can reach (its "
                   "sync_listen is loopback-only), so this device does not dial it; they sync "
                   f"when {peer.name} dials this device's sync_listen")
    if peer.held_read_only:
        click.echo(f"read-only: this device receives {peer.name}'s changes, and {peer.name} "
                   "takes none of this device's")


@click.group("peer")
def peer_group() -> None:
    """Pair with a device by hand, change what it shares, or forget it.

    A PEER is a paired device's id or its name (as `meshdex peers` lists them).

    \b
    Example:
      meshdex peer add MFZWI3D-BONSGYC-... 192.168.1.20:7711 --collections default
      meshdex peer share desktop papers
      meshdex peer rm MFZWI3D-BONSGYC-...
      meshdex peer forget
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
    with open_admin(ctx) as admin:
        peer = admin.add_peer(device_id, address, collections=_collections(collections),
                              read_only=read_only, name=name)
        note_not_held(admin, peer.collections)
    click.echo(f"added peer {peer.name} ({peer.device_id}) at {address}, sharing "
               f"{', '.join(peer.collections)} ({peer.mode})")


@peer_group.command("rm")
@click.argument("peer")
@click.pass_context
def peer_rm_command(ctx: click.Context, peer: str) -> None:
    """Revoke PEER (device id or name): it is refused from its next call on, even on an open
    connection.

    How far it had acknowledged this device's changes is kept, so the tombstones of
    documents deleted since stay until `meshdex peer forget` (safe if it is paired again);
    `meshdex compact` says how many it holds back.

    \b
    Example:
      meshdex peer rm MFZWI3D-BONSGYC-...
      meshdex peer rm old-laptop
    """
    with open_admin(ctx) as admin:
        removed = admin.remove_peer(peer)
    click.echo(f"removed peer {removed.name} ({removed.device_id})")


@peer_group.command("forget")
@click.option("--dry-run", is_flag=True,
              help="Name the devices that would be forgotten; change nothing.")
@json_option
@click.pass_context
def peer_forget_command(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Let go of every device no longer paired (after `meshdex peer rm`, e.g. a lost laptop).

    Tombstones of deleted documents wait until every device that synced them acknowledges
    them; one that is gone never will. This forgets how far such devices got, so the next
    `meshdex compact` can drop what only they held back. A forgotten device is refused from
    then on (it may still hold documents deleted here meanwhile, which would come back): to
    pair it again, join from an empty data directory on it.

    \b
    Example:
      meshdex peer forget --dry-run
      meshdex peer rm MFZWI3D-BONSGYC-... && meshdex peer forget && meshdex compact
    """
    with json_errors(as_json), open_admin(ctx) as admin:
        forgotten = admin.forget_unpaired(dry_run=dry_run)
    if as_json:
        _print_json({"forgotten_stores": forgotten, "dry_run": dry_run})
        return
    if not forgotten:
        click.echo("no device that is no longer paired holds anything back here")
        return
    devices = f"{counted(len(forgotten), 'device')} no longer paired (store " \
              f"{', '.join(store_id[:8] for store_id in forgotten)})"
    if dry_run:
        click.echo(f"would forget {devices}; nothing changed (run it without --dry-run to)")
        return
    click.echo(f"forgot {devices}; `meshdex compact` can now drop the tombstones only they "
               "held back")


@peer_group.command("share")
@click.argument("peer")
@click.argument("collections", nargs=-1, required=True)
@click.pass_context
def peer_share_command(ctx: click.Context, peer: str, collections: tuple[str, ...]) -> None:
    """Share COLLECTIONS with the paired device PEER (id or name) too, without pairing again.

    A collection moves both ways once the other device shares it with this one as well
    (`meshdex sync` names the ones it does not share back). One that does not exist here
    yet arrives from the peer with its settings.

    \b
    Example:
      meshdex peer share MFZWI3D-BONSGYC-... papers recipes
    """
    with open_admin(ctx) as admin:
        shared = admin.share(peer, collections)
        this_device = admin.device_id()
        note_not_held(admin, collections)
    click.echo(f"sharing {', '.join(shared.collections)} with {shared.name} "
               f"({shared.device_id})")
    click.echo(f"on {shared.name}, `meshdex peer share {this_device} {' '.join(collections)}` "
               "shares them back")


@peer_group.command("unshare")
@click.argument("peer")
@click.argument("collections", nargs=-1, required=True)
@click.pass_context
def peer_unshare_command(ctx: click.Context, peer: str, collections: tuple[str, ...]) -> None:
    """Stop sharing COLLECTIONS with PEER (id or name): from its next call on it may neither
    receive nor send them. What it already holds stays on it; sharing a collection again
    later sends what changed here meanwhile, deletes included.

    \b
    Example:
      meshdex peer unshare MFZWI3D-BONSGYC-... recipes
    """
    with open_admin(ctx) as admin:
        left = admin.unshare(peer, collections)
    click.echo(f"stopped sharing {', '.join(sorted(set(collections)))} with {left.name} "
               f"({left.device_id}); it shares {', '.join(left.collections) or 'nothing'}")


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
    with json_errors(as_json), open_admin(ctx, reading=True) as admin:
        peers = admin.peers()
    if as_json:
        _print_json([peer.to_dict() for peer in peers])
        return
    if not peers:
        click.echo("no peers; pair with `meshdex invite` / `meshdex join`")
    for peer in peers:
        address = ", ".join(peer.addresses) or "(dials us)"
        click.echo(f"{peer.device_id}  {peer.name}  {address}  [{', '.join(peer.collections)}] "
                   f"{peer.mode}  last contact {_when(peer.last_contact)}, {lag_text(peer)}"
                   + (f", last error: {peer.last_error}" if peer.last_error else ""))


@click.command("sync")
@click.option("--peer", default=None, help="Only this peer (device id or name).")
@json_option
@config_option
@click.pass_context
def sync_command(ctx: click.Context, peer: str | None, as_json: bool,
                 config_path: Path | None) -> None:
    """Sync now with every peer (or --peer PEER): send and receive changes and the peers'
    index bundles, print what moved.

    Beside a running `meshdex serve` (or through --node) the serving node runs the session,
    at once rather than at its next interval, and indexes in the background; otherwise this
    command opens the store and, before it exits, indexes what the sessions brought as
    index_policy says (fetch: the peer's bundle only; auto: the peer's bundle when it covers
    the documents, else a build here; build: a build here), with a progress bar.

    \b
    Example:
      meshdex sync
      meshdex sync --peer desktop
      meshdex --node 127.0.0.1:7710 --token mdx_... sync --peer MFZWI3D-BONSGYC-... --json
    """
    from meshdex.node.cli.index_cmds import progress_bar  # it imports this module

    with (json_errors(as_json), open_admin(ctx, config_path) as admin,
          progress_bar() as progress):
        reports = admin.sync_now(peer, progress=progress)
    if as_json:
        _print_json([report.to_dict() for report in reports])
    else:
        print_reports(reports)
    failure = sync_failure(reports)
    if failure is not None:
        raise failure


def print_reports(reports: list[SessionReport]) -> None:
    """What each session moved, as `meshdex sync` prints it."""
    if not reports:
        click.echo("no peers to sync with")
    for report in reports:
        click.echo(f"{report.name} ({report.peer[:7]}): {_session_outcome(report)}")
        if report.held_read_only:
            click.echo(f"  {report.name} holds this device read-only: nothing made here "
                       "was sent")
        for name in report.not_shared_back:
            click.echo(f"  {name}: not shared back by {report.name}, nothing moved "
                       f"(`meshdex peer share` there)")
        for item in report.collections:
            click.echo(f"  {item.collection}: received {item.received}, sent {item.sent}, "
                       f"conflicts {item.conflicts}"
                       + (f", error: {item.error}" if item.error else ""))
            if item.decision:
                click.echo(f"    bundle: {item.decision} ({item.reason}); fetched "
                           f"{item.bundle_bytes_fetched} of {item.bundle_bytes_total} bytes, "
                           f"{item.blocks_fetched} blocks, {item.blocks_reused} reused")
            if item.index:
                click.echo(f"    index: {index_text(item.index)}")


def sync_failure(reports: list[SessionReport]) -> MeshdexError | None:
    """What `meshdex sync` exits with: ``SyncError`` (12) naming the peers a session failed
    with; else, where the sessions went through but indexing what they brought failed (a
    one-shot sync), an error of that failure's kind naming the collections (a missing
    model exits 9 as `meshdex build` does); else None."""
    unsynced = [r.name for r in reports if r.error or any(c.error for c in r.collections)]
    unindexed = {c.collection: c.index for r in reports for c in r.collections
                 if c.index is not None and c.index.action == INDEX_FAILED}
    not_indexed = f"indexing what it brought failed for {', '.join(map(repr, unindexed))}"
    if unsynced:
        return SyncError(f"could not sync with {', '.join(unsynced)} (see above)"
                         + (f"; {not_indexed}" if unindexed else ""))
    if not unindexed:
        return None
    kind = _error_class(next(iter(unindexed.values())).error_kind)
    return kind(f"synced, but {not_indexed} (see above)",
                hint=f"fix that, then `meshdex build -c {next(iter(unindexed))}` indexes the "
                     "documents received")


def _error_class(name: str | None) -> type[MeshdexError]:
    """The meshdex error class called ``name``; the root class when there is none."""
    pending: list[type[MeshdexError]] = [MeshdexError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return MeshdexError


def _session_outcome(report: SessionReport) -> str:
    """A session's headline: its error, how many collections failed, or ok."""
    if report.error:
        return f"error: {report.error}"
    failed = sum(1 for item in report.collections if item.error)
    if failed:
        return f"{failed} of {len(report.collections)} collections failed"
    return "ok"


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
    with json_errors(as_json), open_admin(ctx, reading=True) as admin:
        records, names = admin.conflicts(collection), admin.device_names()
    if as_json:
        _print_json([conflict_to_dict(r, names) for r in records])
        return
    if not records:
        click.echo("no conflicts")
    for record in records:
        what = "a delete" if record.op is ChangeOp.DELETE else f"{len(record.text or '')} chars"
        click.echo(f"{record.collection}/{record.doc_id}: kept the losing version ({what}) "
                   f"written {_when(record.hlc.physical_ms / 1000)} by "
                   f"{device_label(record.origin_device, names)}; it lost to the one written "
                   f"{_when(record.winner_hlc.physical_ms / 1000)} by "
                   f"{device_label(record.winner_hlc.device_id, names)}")


def index_text(outcome: IndexOutcome) -> str:
    """What a one-shot sync did for a collection's index, as `meshdex sync` prints it."""
    if outcome.action == NOT_BUILT:
        return f"not built: {outcome.reason}"
    if outcome.action == INDEX_FAILED:
        return f"failed: {outcome.reason}"
    return (f"{outcome.action} generation {outcome.generation} here ({outcome.passages} "
            f"passages) in {outcome.seconds:.1f} s: {outcome.reason}")


def lag_text(peer: PeerStatus) -> str:
    """How far behind this device the peer is, or that it takes nothing from here."""
    if peer.held_read_only:
        return "receives nothing from here (it holds this device read-only)"
    return f"lag {'?' if peer.lag is None else peer.lag}"


def peer_lines(status: NodeStatus) -> list[str]:
    """The peers part of ``meshdex status``: lag, last sync and last error of each."""
    lines = [f"peers:       {len(status.peers)} ({sum(status.conflicts.values())} "
             f"conflicts kept)"]
    lines += [f"  {p.name} ({p.device_id[:7]}): {lag_text(p)}, last sync {_when(p.last_sync)}"
              + (f", last error: {p.last_error}" if p.last_error else "")
              for p in status.peers]
    return lines


def local_peers(ctx: click.Context) -> list[PeerStatus]:
    """This data directory's peers with their lag (what a serving node reports itself)."""
    return LocalSyncAdmin(_config(ctx, None)).peers()


class SyncCompanion:
    """Peer sync inside ``meshdex serve``: the admin service on the node's port, and the sync
    and pairing listeners. A taken sync port turns sync off with a warning instead of
    refusing to serve the node's own API."""

    def __init__(self, node: Node, config: NodeConfig) -> None:
        self.service = SyncService(node, config)
        self.admin = LocalSyncAdmin(config, service=self.service)
        node.peers_source = self.admin.peers  # the node's Status reports them
        self.running = False

    def register(self, server: grpc.Server) -> None:
        add_admin_service(server, self.admin)

    def start(self) -> None:
        try:
            self.service.start()
        except SyncError as error:
            click.echo(f"warning: peer sync is off: {error}", err=True)
            return
        self.running = True
        click.echo(sync_banner(self.service.addresses, str(self.service.identity.device_id)),
                   err=True)

    def stop(self, grace_period_s: float) -> None:
        self.service.stop(grace_period_s)


def sync_banner(addresses: dict[str, str], device_id: str) -> str:
    """serve's line about sync: where it listens, or that it only dials out (it read 'meshdex
    sync on off' with the listener turned off)."""
    pairing = f"pairing {addresses['pairing']}" if "pairing" in addresses else "pairing off"
    listening = (f"meshdex sync on {addresses['sync']}" if "sync" in addresses else
                 "meshdex sync not listening (sessions to peers dial out)")
    return f"{listening} ({pairing}); device {device_id}"


COMMANDS = [id_command, invite_command, join_command, peer_group, peers_command, sync_command,
            conflicts_command]
