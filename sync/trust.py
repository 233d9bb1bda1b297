"""The trust store: the peers this device is paired with, in ``DATA_DIR/sync/peers.json``.

A peer is trusted exactly when its certificate is recorded here; the sync server builds its
TLS trust list from this file on every handshake and checks each call's certificate against
it, so ``peer rm`` takes effect on the peer's next call. The file is written atomically with
mode 0600 under a ``flock`` (``peer add`` in one process and ``join`` in another cannot lose
each other's change) and re-read whenever its mtime or size changes.

Mode is what the *peer* may do here: ``read-write`` peers send changes we apply;
``read-only`` peers only receive. ``collections`` are the names shared with the peer.

``removed_stores`` maps each device removed with ``peer rm`` (and not paired since) to the id
of its store: ``peer forget`` forgets stores, and pairing such a device again is refused by
looking its store up there (``removed_store_id``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from meshdex.index.errors import InvalidArgument
from meshdex.node.paths import write_private_file
from meshdex.node.validation import check_collection_name
from meshdex.sync.device_id import TEXT_CHARS, DeviceId
from meshdex.sync.errors import (
    InvalidDeviceId,
    PeerExists,
    PeerNameTaken,
    PeerNotFound,
    TrustStoreCorrupt,
)
from meshdex.sync.files import locked, sync_dir
from meshdex.sync.identity import device_id_of_pem

PEERS_FILE_NAME = "peers.json"
PEERS_FILE_HINT = (f"restore {PEERS_FILE_NAME} from a backup; or move it aside and pair every "
                   "device again (`meshdex peer rm` this device there, then `meshdex invite` "
                   "here and `meshdex join TOKEN` there); this device's own identity "
                   "(device.key, device.crt) is not affected")
PEERS_FORMAT_VERSION = 1
READ_WRITE = "read-write"
READ_ONLY = "read-only"
MODES = (READ_WRITE, READ_ONLY)
MAX_ERROR_CHARS = 300
HINT_MARK = " hint: "  # where MeshdexError's text puts the hint
ELLIPSIS = "\u2026"
MAX_NAME_CHARS = 100
MAX_ADDRESSES = 4  # a peer's recorded sync addresses, newest first
# A contact that changes nothing else is written at most this often (every call notes one).
CONTACT_WRITE_INTERVAL_S = 5.0


@dataclass(frozen=True, kw_only=True)
class Peer:
    """One paired device."""

    device_id: str  # DeviceId text form
    name: str
    cert_pem: str
    addresses: tuple[str, ...] = ()  # HOST:PORT of its sync listener(s); empty: it dials us
    collections: tuple[str, ...] = ()
    mode: str = READ_WRITE
    added_at: float = field(default_factory=time.time)
    last_contact: float | None = None
    last_sync: float | None = None
    last_error: str | None = None
    # Its store's id, learnt at hello: what its changes' origins and this device's cursors
    # for it are keyed by. Empty until the first session.
    store_id: str = ""
    # The peer holds this device read-only (a read-only invite, `peer add --read-only` there):
    # it takes none of this device's changes. Learnt at join and at every hello.
    held_read_only: bool = False

    @property
    def read_only(self) -> bool:
        return self.mode == READ_ONLY

    def shares(self, collection: str) -> bool:
        return collection in self.collections

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``peers --json`` and the file (the certificate is public data)."""
        data = asdict(self)
        data["addresses"], data["collections"] = list(self.addresses), list(self.collections)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Peer:
        return cls(**{**data, "addresses": tuple(data["addresses"]),
                      "collections": tuple(data["collections"])})


def make_peer(*, cert_pem: str, name: str, addresses: tuple[str, ...] | list[str],
              collections: tuple[str, ...] | list[str], mode: str,
              held_read_only: bool = False) -> Peer:
    """A validated ``Peer`` whose device id is computed from its certificate."""
    if mode not in MODES:
        raise TrustStoreCorrupt(f"unknown peer mode {mode!r}")
    return Peer(
        device_id=str(device_id_of_pem(cert_pem)), name=make_name(name), cert_pem=cert_pem,
        addresses=tuple(addresses),
        collections=tuple(sorted({check_collection_name(c) for c in collections})), mode=mode,
        held_read_only=held_read_only,
    )


def make_name(name: str) -> str:
    """A peer's name as recorded: at most ``MAX_NAME_CHARS``."""
    return name[:MAX_NAME_CHARS]


def _namesake(peers: dict[str, Peer], peer: Peer) -> Peer | None:
    """Another of ``peers`` called as ``peer`` is, if any."""
    return next((other for other in peers.values()
                 if other.name == peer.name and other.device_id != peer.device_id), None)


def _no_peer(device_id: DeviceId | str) -> PeerNotFound:
    return PeerNotFound(f"no paired peer {device_id}", peer=str(device_id),
                        hint="`meshdex peers` lists paired devices")


def _id_shaped(ref: str) -> bool:
    """Text as long as a device id: a mistyped id, whose parse error names the typo."""
    return len(re.sub(r"[\s-]", "", ref)) == TEXT_CHARS


def _ambiguous(name: str, named: list[Peer]) -> InvalidArgument:
    candidates = "; ".join(f"{peer.device_id} at {', '.join(peer.addresses) or '(dials us)'}"
                           for peer in named)
    return InvalidArgument(f"{len(named)} paired peers are called {name!r}",
                           hint=f"give the device id of the one you mean: {candidates}")


def _unknown(ref: str, peers: list[Peer]) -> PeerNotFound:
    names = ", ".join(sorted({repr(peer.name) for peer in peers})) or "none"
    return PeerNotFound(f"no paired peer has the id or name {ref!r} (paired: {names})",
                        peer=ref, hint="`meshdex peers` lists paired devices with their ids")


def clip_error(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` in at most ``limit`` characters, as a peer's last error is kept: the message is
    cut at a word boundary and marked with an ellipsis, and its hint (what follows
    ``hint:``) is kept whole, so `meshdex peers` and `status` still say what to do."""
    if len(text) <= limit:
        return text
    mark = text.rfind(HINT_MARK)
    body, tail = (text[:mark], text[mark:]) if mark > 0 else (text, "")
    if len(tail) > limit // 2:  # a hint that would crowd the message out: cut it too
        body, tail = text, ""
    room = limit - len(tail) - len(ELLIPSIS)
    kept = body[:room + 1].rsplit(" ", 1)[0] if " " in body[:room + 1] else body[:room]
    return kept[:room].rstrip(" ,;:") + ELLIPSIS + tail


def sharing_of(peers: list[Peer]) -> dict[str, list[str]]:
    """Each collection shared with one of ``peers``, and the store ids of the peers sharing it
    ("" for one not met yet): the devices a tombstone waits for (``Store.compact``'s
    ``paired``)."""
    shared: dict[str, list[str]] = {}
    for peer in peers:
        for collection in peer.collections:
            shared.setdefault(collection, []).append(peer.store_id)
    return shared


class TrustStore:
    """The peers file of one data directory. Thread-safe and multi-process safe."""

    def __init__(self, data_dir: Path) -> None:
        self.path = sync_dir(data_dir) / PEERS_FILE_NAME
        self._lock = threading.Lock()
        self._peers: dict[str, Peer] = {}
        self._removed: dict[str, str] = {}  # device id -> its store's id, when it was removed
        self._stamp: tuple[int, int, int] | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _load(self) -> dict[str, Peer]:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            peers: dict[str, Peer] = {}
            removed: dict[str, str] = {}
            if stamp is not None:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    peers = {p["device_id"]: Peer.from_dict(p) for p in data["peers"]}
                    removed = {str(k): str(v) for k, v in data.get("removed_stores", {}).items()}
                except (ValueError, KeyError, TypeError, AttributeError) as error:
                    raise TrustStoreCorrupt(f"cannot read the peers file: {error}",
                                            path=self.path, hint=PEERS_FILE_HINT) from None
            self._peers, self._removed, self._stamp = peers, removed, stamp
        return self._peers

    def _save(self, peers: dict[str, Peer], removed: dict[str, str] | None = None) -> None:
        """Write ``peers`` and ``removed`` (default: the removed devices as loaded)."""
        payload = {"version": PEERS_FORMAT_VERSION,
                   "peers": [p.to_dict() for _, p in sorted(peers.items())],
                   "removed_stores": dict(sorted((self._removed if removed is None
                                                  else removed).items()))}
        write_private_file(self.path, json.dumps(payload, indent=1).encode("utf-8"))
        self._stamp = None

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Peer]]:
        """The peers re-read from the file under both locks (this process's threads and other
        processes), as a copy to change and, where it changed, ``_save`` within the block."""
        with self._lock, locked(self.path):
            self._stamp = None
            yield dict(self._load())

    def all(self) -> list[Peer]:
        """Every paired peer, sorted by device id."""
        with self._lock:
            return [peer for _, peer in sorted(self._load().items())]

    def sharing(self) -> dict[str, list[str]]:
        """``sharing_of`` every paired peer."""
        return sharing_of(self.all())

    def find(self, device_id: DeviceId | str) -> Peer | None:
        """The peer with that id, or None. Cheap: a ``stat`` unless the file changed."""
        with self._lock:
            return self._load().get(str(device_id))

    def get(self, device_id: DeviceId | str) -> Peer:
        """The peer with that id; ``PeerNotFound`` if none."""
        peer = self.find(device_id)
        if peer is None:
            raise _no_peer(device_id)
        return peer

    def resolve(self, ref: str) -> Peer:
        """The paired peer ``ref`` names: its device id, or failing that its name. What every
        command that takes a peer accepts. ``PeerNotFound`` when no paired peer has that id or
        name (naming those paired), ``InvalidArgument`` listing the candidates when several
        share the name, ``InvalidDeviceId`` for an id with a typo."""
        try:
            device_id = DeviceId.parse(ref)
        except InvalidDeviceId as error:
            not_an_id = error
        else:
            return self.get(device_id)
        peers = self.all()
        named = [peer for peer in peers if peer.name == ref.strip()]
        if len(named) == 1:
            return named[0]
        if named:
            raise _ambiguous(ref.strip(), named)
        if _id_shaped(ref):
            raise not_an_id
        raise _unknown(ref, peers)

    def add(self, peer: Peer, *, replace_existing: bool = False) -> Peer:
        """Record ``peer``; ``PeerExists`` if its id is paired already (unless replacing),
        ``PeerNameTaken`` if another paired device has its name (every command that takes a
        peer's name would refuse it as ambiguous)."""
        with self._editing() as peers:
            if peer.device_id in peers and not replace_existing:
                raise PeerExists(f"device {peer.device_id} is already paired",
                                 peer=peer.device_id,
                                 hint="`meshdex peer rm` it first to pair it again")
            namesake = _namesake(peers, peer)
            if namesake is not None:
                raise PeerNameTaken(
                    f"another paired device is already called {peer.name!r} "
                    f"({namesake.device_id})", peer=peer.device_id,
                    hint="give this one another name with --name (`meshdex peers` lists the "
                         "names taken)")
            peers[peer.device_id] = peer
            self._save(peers, {k: v for k, v in self._removed.items() if k != peer.device_id})
        return peer

    def free_name(self, name: str, device_id: DeviceId | str) -> str:
        """``name``, or where another paired device has it, ``name-SHORTID`` of ``device_id``:
        for a name this device does not choose (an inviter's own)."""
        candidate = make_name(name)
        with self._lock:
            taken = {peer.name for peer in self._load().values()
                     if peer.device_id != str(device_id)}
        if candidate not in taken:
            return candidate
        short = DeviceId.parse(str(device_id)).short
        return f"{name[:MAX_NAME_CHARS - len(short) - 1]}-{short}"

    def remove(self, device_id: DeviceId | str) -> Peer:
        """Forget a peer; its next handshake and its next call on an open connection fail.
        The id of its store, once known, is kept (``removed_store_id``)."""
        with self._editing() as peers:
            peer = peers.pop(str(device_id), None)
            if peer is None:
                raise _no_peer(device_id)
            removed = {**self._removed, peer.device_id: peer.store_id} if peer.store_id \
                else None
            self._save(peers, removed)
        return peer

    def removed_store_id(self, device_id: DeviceId | str) -> str:
        """The store of ``device_id`` when it was removed and not paired since; "" if none
        (never removed, paired again, or removed before its first session)."""
        with self._lock:
            self._load()
            return self._removed.get(str(device_id), "")

    def change_sharing(self, device_id: DeviceId | str, *, share: tuple[str, ...] = (),
                       unshare: tuple[str, ...] = ()) -> Peer:
        """Share more collections with a paired peer, or stop sharing some, without pairing
        again; the sync server reads this file on the peer's next call, so that call already
        sees the change. ``PeerNotFound``; ``InvalidArgument`` for a bad name or for
        unsharing one that is not shared (a typo would otherwise pass silently)."""
        added = {check_collection_name(name) for name in share}
        dropped = {check_collection_name(name) for name in unshare}
        with self._editing() as peers:
            peer = peers.get(str(device_id))
            if peer is None:
                raise _no_peer(device_id)
            missing = sorted(dropped - set(peer.collections))
            if missing:
                shared = ", ".join(peer.collections) or "nothing"
                raise InvalidArgument(
                    f"{', '.join(map(repr, missing))} not shared with {peer.name or peer.device_id}"
                    f" (it shares {shared})", hint="`meshdex peers` lists what each peer shares")
            kept = (set(peer.collections) | added) - dropped
            peer = replace(peer, collections=tuple(sorted(kept)))
            peers[peer.device_id] = peer
            self._save(peers)
        return peer

    def note(self, device_id: str, *, error: str | None = None, synced: bool = False,
             store_id: str = "", held_read_only: bool | None = None,
             contacted: bool = True) -> None:
        """Record a contact with a peer (and its error, a completed sync, the id of its store
        and whether it holds this device read-only, when known); a peer removed meanwhile
        stays removed. ``contacted=False``: an outcome that says nothing of reaching the peer
        (a session's end, noted after its hello was), so ``last_contact`` stays when it was
        last reached and tells how long a peer has been gone."""
        now = time.time()
        error = clip_error(error) if error else None

        def nothing_to_write(peer: Peer | None) -> bool:
            if peer is None:
                return True
            if (synced or (store_id and store_id != peer.store_id)
                    or held_read_only not in (None, peer.held_read_only)
                    or error != peer.last_error):
                return False
            return not contacted or (peer.last_contact is not None
                                     and now - peer.last_contact < CONTACT_WRITE_INTERVAL_S)

        with self._lock:  # most calls end here: a stat, no file lock, no re-read
            if nothing_to_write(self._load().get(device_id)):
                return
        with self._editing() as peers:
            peer = peers.get(device_id)
            if peer is None or nothing_to_write(peer):
                return
            new_store = bool(store_id) and store_id != peer.store_id
            changes: dict[str, Any] = {"last_error": error}
            if contacted:
                changes["last_contact"] = now
            if new_store:
                changes["store_id"] = store_id
            if held_read_only is not None:
                changes["held_read_only"] = held_read_only
            if synced:
                changes["last_sync"] = now
            peers[device_id] = replace(peer, **changes)
            self._save(peers)

    def set_address(self, device_id: str, address: str) -> Peer | None:
        """Put ``address`` first among a peer's addresses (sessions dial the first), keeping
        up to ``MAX_ADDRESSES`` others; None if the peer is not paired (nothing is added)."""
        with self._editing() as peers:
            peer = peers.get(device_id)
            if peer is None:
                return None
            others = [a for a in peer.addresses if a != address]
            peers[device_id] = replace(peer, addresses=(address, *others)[:MAX_ADDRESSES])
            self._save(peers)
            return peers[device_id]

    def certificates(self) -> list[bytes]:
        """PEM certificates of every paired peer: the sync server's client trust list."""
        return [peer.cert_pem.encode() for peer in self.all()]
