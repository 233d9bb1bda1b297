"""Replication between this device's store and one peer: what to send, and how to apply.

Both directions use the same two operations. ``outgoing`` reads this device's change log
after a cursor and yields bounded batches of the documents as they stand now (a change whose
document was rewritten or deleted later is left to that later entry, so every batch carries
each document's current version at most once); changes the receiver already holds
(its watermarks) or that came from it are not sent, but the batch's ``last_seq`` still moves
past them so the cursor advances. ``apply`` merges a batch by last-writer-wins on HLC stamps
(``Store.apply_peer_batch``: device id breaks ties, deletes are tombstones, a version that
loses to a concurrent one is kept as a conflict record) and moves the peer's cursor in the
same store transaction: applying a batch twice changes nothing, and a crash can neither lose
a batch nor skip one. Conflict records travel in the same stream, in log order
(``Store.changes_and_conflicts_since``), so every device ends up with the same ones.

Cursors live in the store, keyed by the peer's store id (what its changes' origins name):
``Store.applied_cursor`` is how far this device holds a peer's log, ``Store.peer_cursor``
how far the peer acknowledged this device's.

A collection received for the first time is created with the sender's config (embedder,
chunking). ``on_applied(collection)`` lets the node bring the index up to date; the caller
decides whether a network embedder may be used (never without the user's opt-in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from meshdex.index.bundle_manifest import FORMAT_VERSION as BUNDLE_FORMAT_VERSION
from meshdex.node.errors import ClockSkew, DocumentNotFound
from meshdex.node.hlc import DEFAULT_MAX_CLOCK_SKEW_MS, check_not_ahead
from meshdex.node.records import Change, ChangeOp, Conflict, Document, RemoteChange
from meshdex.node.service import Node
from meshdex.sync.bundle_receive import BundleReceiver
from meshdex.sync.bundle_shelf import BundleShelf
from meshdex.sync.errors import CollectionNotShared, PeerForgotten, ReadOnlyPeer
from meshdex.sync.identity import DeviceIdentity
from meshdex.sync.progress import import_legacy_progress
from meshdex.sync.trust import Peer
from meshdex.sync.wire import (
    MAX_BATCH_CHANGES,
    MAX_BATCH_TEXT_BYTES,
    PROTOCOL_VERSION,
    ChangeBatch,
    CollectionConfig,
    Hello,
    SharedCollection,
)

logger = logging.getLogger(__name__)

SKEW_SETTING = "sync_max_clock_skew_min (config, MESHDEX_SYNC_MAX_CLOCK_SKEW_MIN)"


@dataclass(frozen=True, kw_only=True)
class BatchOutcome:
    applied: int
    ignored: int
    conflicts: int


class SyncEngine:
    """One device's side of replication; shared by the sync servicer and the session client.

    ``max_clock_skew_ms``: how far ahead of this device's clock a received change may be
    stamped (``NodeConfig.sync_max_clock_skew_min``)."""

    def __init__(self, *, node: Node, identity: DeviceIdentity,
                 on_applied: Callable[[str], None] | None = None,
                 shelf: BundleShelf | None = None,
                 bundles: BundleReceiver | None = None,
                 max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS) -> None:
        self.node, self.identity = node, identity
        self.max_clock_skew_ms = max_clock_skew_ms
        import_legacy_progress(node.data_dir, node.store)
        self.on_applied = on_applied
        self.shelf = shelf  # serves this device's bundles to peers
        self.bundles = bundles  # decides on and installs peers' bundles

    @property
    def store(self):
        return self.node.store

    # --- hello --------------------------------------------------------------------------

    def config_of(self, collection: str) -> CollectionConfig:
        info = self.store.get_collection(collection)
        return CollectionConfig(name=info.name, embedder=info.embedder, chunking=info.chunking)

    def shared_view(self, peer: Peer, peer_store_id: str) -> list[SharedCollection]:
        """The shared collections this device holds, with how far it holds the log of the
        peer's store ``peer_store_id`` in each."""
        views = []
        for name in peer.collections:
            if not self.store.has_collection(name):
                continue
            views.append(SharedCollection(
                config=self.config_of(name), last_seq=self.store.last_seq,
                cursor=self.store.applied_cursor(peer_store_id, name),
                watermarks=self.store.state(name).watermarks,
            ))
        return views

    def refuse_forgotten(self, peer: Peer, store_id: str, *, caller: bool) -> None:
        """``PeerForgotten`` for a session with a store ``meshdex peer forget`` let go of."""
        if not store_id or not self.store.is_forgotten(store_id):
            return
        if caller:  # the message reaches the forgotten device
            message = (f"this device forgot your store {store_id[:8]} (`meshdex peer forget`): "
                       "documents deleted here since may still be on your device")
            hint = "to sync with it again, join it from an empty data directory on your device"
        else:
            message = (f"{peer.name}'s store {store_id[:8]} was forgotten here (`meshdex peer "
                       "forget`): documents deleted here since may still be on it")
            hint = "to pair it again, have it join from an empty data directory"
        raise PeerForgotten(message, peer=peer.device_id, hint=hint)

    def hello(self, peer: Peer, caller_store_id: str) -> Hello:
        self.refuse_forgotten(peer, caller_store_id, caller=True)
        return Hello(protocol_version=PROTOCOL_VERSION, store_id=self.store.device_id,
                     device_id=str(self.identity.device_id),
                     bundle_format_versions=(BUNDLE_FORMAT_VERSION,),
                     collections=self.shared_view(peer, caller_store_id),
                     caller_read_only=peer.read_only, shared_names=peer.collections)

    @staticmethod
    def check_shared(peer: Peer, collection: str, *, writing: bool) -> None:
        if not peer.shares(collection):
            raise CollectionNotShared(
                f"collection {collection!r} is not shared with this device", peer=peer.device_id,
                hint="the other device can share it with `meshdex peer share`")
        if writing and peer.read_only:
            raise ReadOnlyPeer(f"this device is paired read-only: its changes to "
                               f"{collection!r} are refused", peer=peer.device_id)

    # --- sending ------------------------------------------------------------------------

    def _current(self, collection: str, doc_id: str) -> Document | None:
        try:
            return self.store.get_document(collection, doc_id)
        except DocumentNotFound:
            return None

    def outgoing(self, collection: str, *, after_seq: int, receiver_store_id: str,
                 receiver_watermarks: dict[str, int],
                 with_config: bool = False) -> Iterator[ChangeBatch]:
        """Bounded batches of this device's changes and conflict records in ``collection``
        after ``after_seq``, in log order."""
        config = self.config_of(collection) if with_config else None
        changes: list[RemoteChange] = []
        conflicts: list[Conflict] = []
        pending_bytes, last_seq = 0, after_seq
        stream = self.store.changes_and_conflicts_since(after_seq, collection=collection)
        for item in stream:
            last_seq = item.seq
            if isinstance(item, Conflict):
                conflicts.append(replace(item, seq=0))  # the seq is this device's own
                pending_bytes += len(item.text or "")
            else:
                remote = self._shippable(item, receiver_store_id, receiver_watermarks)
                if remote is None:
                    continue
                changes.append(remote)
                pending_bytes += len(remote.text or "")
            if (len(changes) + len(conflicts) >= MAX_BATCH_CHANGES
                    or pending_bytes >= MAX_BATCH_TEXT_BYTES):
                yield ChangeBatch(collection=collection, changes=changes, conflicts=conflicts,
                                  last_seq=last_seq, sender_store_id=self.store.device_id,
                                  config=config)
                changes, conflicts, pending_bytes, config = [], [], 0, None
        if changes or conflicts or last_seq > after_seq or config is not None:
            yield ChangeBatch(collection=collection, changes=changes, conflicts=conflicts,
                              last_seq=last_seq, sender_store_id=self.store.device_id,
                              config=config)

    def _shippable(self, change: Change, receiver_store_id: str,
                   receiver_watermarks: dict[str, int]) -> RemoteChange | None:
        """The change as the receiver gets it, or None when it holds it already or a later
        log entry carries the document."""
        if (change.origin_device == receiver_store_id
                or change.origin_seq <= receiver_watermarks.get(change.origin_device, 0)):
            return None
        current = self._current(change.collection, change.doc_id)
        if change.op is ChangeOp.DELETE:
            if current is not None:
                return None  # re-added later; that entry carries it
            return RemoteChange(doc_id=change.doc_id, op=ChangeOp.DELETE, hlc=change.hlc,
                                origin_device=change.origin_device,
                                origin_seq=change.origin_seq)
        if current is None or current.hlc != change.hlc:
            return None  # rewritten or deleted later; that entry carries it
        return RemoteChange(doc_id=change.doc_id, op=ChangeOp.UPSERT, hlc=change.hlc,
                            origin_device=change.origin_device, origin_seq=change.origin_seq,
                            text=current.text, metadata=current.metadata,
                            source=current.source)

    # --- receiving ----------------------------------------------------------------------

    def ensure_collection(self, config: CollectionConfig | None, collection: str) -> None:
        """Create a collection received for the first time with the sender's config."""
        if self.store.has_collection(collection):
            return
        if config is None:
            return  # nothing to apply into yet; a batch with changes always carries it
        self.node.create_collection(collection, embedder=config.embedder,
                                    chunking=config.chunking)
        logger.info("created collection %r from a peer (%s embedder)", collection,
                    config.embedder.kind)

    def acknowledge(self, peer_store_id: str, collection: str, seq: int) -> None:
        """The peer holds this device's log of ``collection`` up to ``seq`` (durable)."""
        if self.store.has_collection(collection):
            self.store.set_peer_cursor(peer_store_id, collection, seq)

    def apply(self, batch: ChangeBatch) -> BatchOutcome:
        """Merge ``batch`` and advance its sender's cursor, in one store transaction.

        A batch carrying a stamp more than ``max_clock_skew_ms`` ahead of this device's clock
        is refused whole with ``ClockSkew`` and the cursor stays: last-writer-wins would
        otherwise let it beat every honest edit for as long as the skew lasts. The same batch
        is sent again at every session and accepted once this device's clock comes within the
        limit (or the limit is raised).

        Whole, not only the changes ahead: the cursor counts the sender's log, and a change
        does not carry its place in it, so the cursor cannot stop just before a held-back
        change; applying the later ones would also move the watermark of the held-back one's
        origin past it, and the sender never sends a change below the receiver's watermark
        again, so it would be lost. Nor would it let much more through: a device's stamps
        after a far-future one follow it (an HLC never goes back), so its later edits are as
        far ahead.
        """
        for change in batch.changes:  # before anything is merged: the batch is refused whole
            self._check_not_ahead(batch, change)
        self.ensure_collection(batch.config, batch.collection)
        if not self.store.has_collection(batch.collection):
            return BatchOutcome(applied=0, ignored=0, conflicts=0)  # nothing to apply into
        result = self.store.apply_peer_batch(batch.collection, batch.changes,
                                             conflicts=batch.conflicts,
                                             peer_device=batch.sender_store_id,
                                             through_seq=batch.last_seq)
        applied = sum(result.applied)
        if applied and self.on_applied is not None:
            self.on_applied(batch.collection)
        return BatchOutcome(applied=applied, ignored=len(result.applied) - applied,
                            conflicts=result.conflicts)

    def _check_not_ahead(self, batch: ChangeBatch, change: RemoteChange) -> None:
        try:
            check_not_ahead(change.hlc, what=f"document {change.doc_id!r}",
                            max_skew_ms=self.max_clock_skew_ms, setting=SKEW_SETTING)
        except ClockSkew as error:
            raise ClockSkew(f"changes to {batch.collection!r} from store "
                            f"{batch.sender_store_id[:8]} refused for clock skew: "
                            f"{error.message}", hint=error.hint) from None
