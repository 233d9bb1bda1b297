"""Managing this device's sync: the operations behind ``id``, ``invite``, ``join``, ``peer``,
``peers``, ``sync`` and ``conflicts``, whether run embedded or through a serving node.

``build --on`` lives here too: it is a sync operation (a peer builds, this device fetches).

``SyncAdmin`` is the interface the CLI uses; ``LocalSyncAdmin`` implements it on a data
directory (and, inside ``meshdex serve``, on the running ``SyncService``), and
``meshdex.sync.admin_client.SyncAdminClient`` implements it over gRPC. Same records, same
errors, so a command prints the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from meshdex.index.params import BuildParams
from meshdex.node.config import NodeConfig
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.indexing import BuildProgress
from meshdex.node.paths import STORE_DIR_NAME
from meshdex.node.records import ChangeOp, Conflict, PeerStatus
from meshdex.node.store import Store
from meshdex.sync.client import SessionReport, add_peer, join
from meshdex.sync.device_id import DeviceId
from meshdex.sync.engine import SyncEngine
from meshdex.sync.errors import PeerForgotten
from meshdex.sync.identity import load_identity
from meshdex.sync.one_shot import sync_once
from meshdex.sync.pairing import InviteBook, InviteToken
from meshdex.sync.remote_build import RemoteBuildReport, build_on_peer
from meshdex.sync.trust import Peer, TrustStore

if TYPE_CHECKING:
    from meshdex.sync.service import SyncService


@dataclass(frozen=True, kw_only=True)
class CreatedInvite:
    token: str
    expires_at: float
    collections: tuple[str, ...]
    read_only: bool


THIS_DEVICE = "this device"
SHORT_STORE_ID_CHARS = 8


def device_label(store_id: str, names: Mapping[str, str]) -> str:
    """How a person knows the device whose store is ``store_id``: its name in ``names``
    (``device_names``), else the first ``SHORT_STORE_ID_CHARS`` of the id."""
    return names.get(store_id) or store_id[:SHORT_STORE_ID_CHARS]


def iso_time(stamp: HLCTimestamp) -> str:
    """An HLC stamp's wall-clock part as ISO-8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(stamp.physical_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conflict_to_dict(conflict: Conflict, names: Mapping[str, str]) -> dict[str, Any]:
    """A conflict record as ``conflicts --json`` prints it: the raw stamps and store ids, and
    beside them their times and the devices' names (``names``: ``device_names``)."""
    return {"collection": conflict.collection, "doc_id": conflict.doc_id,
            "deleted": conflict.op is ChangeOp.DELETE, "losing_hlc": conflict.hlc.to_str(),
            "winning_hlc": conflict.winner_hlc.to_str(), "origin_device": conflict.origin_device,
            "losing_time": iso_time(conflict.hlc), "winning_time": iso_time(conflict.winner_hlc),
            "origin": device_label(conflict.origin_device, names),
            "winner_origin": device_label(conflict.winner_hlc.device_id, names),
            "text": conflict.text, "metadata": conflict.metadata, "source": conflict.source}


def status_of(peer: Peer, lag: int | None = None) -> PeerStatus:
    return PeerStatus(**{k: v for k, v in asdict(peer).items()
                         if k not in ("cert_pem", "store_id")}, lag=lag)


class SyncAdmin(Protocol):
    """What the sync commands need. Errors are ``MeshdexError`` of the same kind either way."""

    def device_id(self) -> str:
        """This device's id (its identity is created on first use)."""

    def create_invite(self, *, collections: tuple[str, ...], read_only: bool,
                      ttl_s: float) -> CreatedInvite:
        """A one-time invite token for the given collections."""

    def join(self, token: str, *, name: str | None) -> PeerStatus:
        """Redeem another device's invite; nothing is recorded if it is refused."""

    def add_peer(self, device_id: str, address: str, *, collections: tuple[str, ...],
                 read_only: bool, name: str) -> PeerStatus:
        """Trust the device at ``address`` if its certificate is ``device_id``."""

    def remove_peer(self, peer: str) -> PeerStatus:
        """Revoke ``peer`` (device id or name, ``TrustStore.resolve``); its replication state
        stays."""

    def forget_unpaired(self, *, dry_run: bool = False) -> list[str]:
        """Let go of the replication state of the stores no paired device has: the
        tombstones only they held back can be compacted, and they are refused from then on;
        the store ids forgotten (``dry_run``: that would be, and nothing changes)."""

    def share(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        """Share more collections with a paired peer (``TrustStore.change_sharing``)."""

    def unshare(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        """Stop sharing collections with a paired peer; what it holds of them stays there."""

    def peers(self) -> list[PeerStatus]:
        """Every paired peer, with lag."""

    def collection_names(self) -> list[str]:
        """The collections this device holds, sorted."""

    def sync_now(self, peer: str | None, *,
                 progress: BuildProgress | None = None) -> list[SessionReport]:
        """One session with ``peer`` (device id or name), or with every peer. Embedded, what
        no installed bundle then covers is indexed per ``index_policy`` before it returns
        (``progress``: those builds'; a serving node builds in the background)."""

    def conflicts(self, collection: str | None) -> list[Conflict]:
        """Kept conflict records, by collection then document id."""

    def device_names(self) -> dict[str, str]:
        """Store id -> the name of the device whose store it is, for the paired devices whose
        store is known and for this one (``THIS_DEVICE``); empty where they are not known."""

    def build_on(self, peer: str, collection: str, *, params: BuildParams | None,
                 rebuild: bool, progress: BuildProgress | None) -> RemoteBuildReport:
        """Have ``peer`` (device id or name) build ``collection`` and install its bundle here,
        relaying the peer's build progress; embeds nothing here."""


def _lag(store: Store | None, peer: Peer) -> int | None:
    """Changes in the shared collections ``peer`` has not acknowledged and would be sent;
    None when unknown, or when the peer holds this device read-only (it never will).

    A change that came from the peer itself is not counted: a session never sends a peer its
    own writes back, and the device that answered a sync applies them after the peer's
    acknowledgement, so they would show as lag until the next session."""
    if store is None or peer.held_read_only:
        return None
    return sum(sum(1 for change in store.changes_since(
                       store.peer_cursor(peer.store_id, name) if peer.store_id else 0,
                       collection=name)
                   if change.origin_device != peer.store_id)
               for name in peer.collections if store.has_collection(name))


class LocalSyncAdmin:
    """``SyncAdmin`` on a data directory; with ``service``, the one a serving node runs."""

    def __init__(self, config: NodeConfig, *, service: SyncService | None = None) -> None:
        self.config, self.service = config, service
        self.data_dir = Path(config.data_dir)

    def device_id(self) -> str:
        return str(load_identity(self.data_dir).device_id)

    def create_invite(self, *, collections: tuple[str, ...], read_only: bool,
                      ttl_s: float) -> CreatedInvite:
        from meshdex.index.errors import InvalidArgument
        from meshdex.sync.service import advertised_addresses

        if not self.config.pair_listen:
            raise InvalidArgument("pairing is turned off (pair_listen is empty)",
                                  hint="set pair_listen, e.g. 0.0.0.0:7712 on a LAN node")
        identity = load_identity(self.data_dir)
        invite = InviteBook(self.data_dir).create(collections=collections, read_only=read_only,
                                                  ttl_s=ttl_s)
        pair_addresses = advertised_addresses(self.config, self._bound("pairing"))
        token = InviteToken(device_id=identity.device_id, invite_id=invite.invite_id,
                            secret=invite.secret, pair_addresses=pair_addresses,
                            sync_addresses=self._sync_addresses())
        return CreatedInvite(token=token.encode(), expires_at=invite.expires_at,
                             collections=invite.collections, read_only=read_only)

    def _bound(self, role: str) -> str:
        """The address a running service bound (port 0 resolved), else the configured one."""
        if self.service is not None and role in self.service.addresses:
            return self.service.addresses[role]
        return self.config.pair_listen if role == "pairing" else self.config.sync_listen

    def _sync_addresses(self) -> tuple[str, ...]:
        from meshdex.sync.service import advertised_addresses

        return advertised_addresses(self.config, self._bound("sync"))

    def join(self, token: str, *, name: str | None) -> PeerStatus:
        self._refuse_forgotten(InviteToken.decode(token).device_id)
        return status_of(join(self.data_dir, token, name=name,
                              addresses=self._sync_addresses()))

    def add_peer(self, device_id: str, address: str, *, collections: tuple[str, ...],
                 read_only: bool, name: str) -> PeerStatus:
        self._refuse_forgotten(DeviceId.parse(device_id))
        return status_of(add_peer(self.data_dir, device_id, address, collections=collections,
                                  read_only=read_only, name=name))

    def _refuse_forgotten(self, device_id: DeviceId) -> None:
        """``PeerForgotten`` before pairing a device again whose store `peer forget` let go
        of: every session would refuse it (it may hold documents deleted here since)."""
        store_id = TrustStore(self.data_dir).removed_store_id(device_id)
        if not store_id:
            return
        with self._store() as store:
            if store is None or not store.is_forgotten(store_id):
                return
        raise PeerForgotten(
            f"device {device_id} was removed and then forgotten here (`meshdex peer forget`, "
            f"store {store_id[:8]}): it may still hold documents deleted here since, so this "
            "device refuses it for good", peer=str(device_id), op="pair",
            hint="forgetting cannot be undone; to pair that device again, run `meshdex join` "
                 "on it from an empty data directory (it gets a new device id)")

    def remove_peer(self, peer: str) -> PeerStatus:
        trust = TrustStore(self.data_dir)
        return status_of(trust.remove(trust.resolve(peer).device_id))

    def forget_unpaired(self, *, dry_run: bool = False) -> list[str]:
        with self._writable_store() as store:
            paired = {peer.store_id for peer in TrustStore(self.data_dir).all()}
            gone = sorted(store.cursor_holders() - paired - {store.device_id})
            if gone and not dry_run:
                store.forget_peers(set(gone))
        return gone

    @contextmanager
    def _writable_store(self) -> Iterator[Store]:
        """The serving node's store, else this data directory's (``StoreLocked`` while another
        process writes it)."""
        if self.service is not None:
            yield self.service.engine.store
            return
        from meshdex.node.service import Node

        with Node.open(self.data_dir) as node:
            yield node.store

    def share(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        trust = TrustStore(self.data_dir)
        return status_of(trust.change_sharing(trust.resolve(peer).device_id, share=collections))

    def unshare(self, peer: str, collections: tuple[str, ...]) -> PeerStatus:
        trust = TrustStore(self.data_dir)
        return status_of(trust.change_sharing(trust.resolve(peer).device_id,
                                              unshare=collections))

    @contextmanager
    def _store(self) -> Iterator[Store | None]:
        """The serving node's store, else this data directory's opened read-only; None if
        there is no store yet."""
        if self.service is not None:
            yield self.service.engine.store
        elif (self.data_dir / STORE_DIR_NAME / "data.mdb").exists():
            with Store.open(self.data_dir, readonly=True) as store:
                yield store
        else:
            yield None

    def peers(self) -> list[PeerStatus]:
        with self._store() as store:
            return [status_of(peer, _lag(store, peer))
                    for peer in TrustStore(self.data_dir).all()]

    def collection_names(self) -> list[str]:
        with self._store() as store:
            return sorted(c.name for c in store.list_collections()) if store else []

    def sync_now(self, peer: str | None, *,
                 progress: BuildProgress | None = None) -> list[SessionReport]:
        trust = TrustStore(self.data_dir)
        chosen = trust.resolve(peer) if peer else None
        if self.service is not None:
            return self.service.sync_now(chosen.device_id if chosen else None)
        from meshdex.node.service import Node

        with Node.open(self.data_dir) as node:
            return sync_once(node, self.config, identity=load_identity(self.data_dir),
                             trust=trust, peers=[chosen] if chosen else trust.all(),
                             progress=progress)

    def conflicts(self, collection: str | None) -> list[Conflict]:
        with self._store() as store:
            if store is None:
                return []
            names = [collection] if collection else [c.name for c in store.list_collections()]
            return [conflict for name in names for conflict in store.conflicts(name)]

    def device_names(self) -> dict[str, str]:
        with self._store() as store:
            own = {store.device_id: THIS_DEVICE} if store is not None else {}
        return {**{peer.store_id: peer.name for peer in TrustStore(self.data_dir).all()
                   if peer.store_id}, **own}

    def build_on(self, peer: str, collection: str, *, params: BuildParams | None,
                 rebuild: bool, progress: BuildProgress | None) -> RemoteBuildReport:
        options = {"peer_ref": peer, "collection": collection, "params": params,
                   "rebuild": rebuild, "progress": progress}
        if self.service is not None:
            return build_on_peer(engine=self.service.engine, trust=self.service.trust,
                                 **options)
        from meshdex.node.service import Node

        identity = load_identity(self.data_dir)
        with Node.open(self.data_dir) as node:
            engine = SyncEngine(node=node, identity=identity)
            return build_on_peer(engine=engine, trust=TrustStore(self.data_dir), **options)
