"""Conversion between ``meshdex.v1.MeshdexSyncAdmin`` messages and the admin records.

Kept apart from ``wire.py`` (the peer protocol) because these records live above the
session code that ``wire.py`` serves.
"""

from __future__ import annotations

from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.sync.admin import PeerStatus
from meshdex.sync.client import CollectionReport, SessionReport


def peer_status_to_wire(peer: PeerStatus) -> pb.PeerInfo:
    return pb.PeerInfo(device_id=peer.device_id, name=peer.name, addresses=peer.addresses,
                       collections=peer.collections, mode=peer.mode, added_at=peer.added_at,
                       last_contact=peer.last_contact or 0, last_sync=peer.last_sync or 0,
                       last_error=peer.last_error or "",
                       lag=-1 if peer.lag is None else peer.lag)


def peer_status_from_wire(message: pb.PeerInfo) -> PeerStatus:
    return PeerStatus(device_id=message.device_id, name=message.name,
                      addresses=tuple(message.addresses), collections=tuple(message.collections),
                      mode=message.mode, added_at=message.added_at,
                      last_contact=message.last_contact or None,
                      last_sync=message.last_sync or None, last_error=message.last_error or None,
                      lag=None if message.lag < 0 else message.lag)


def session_report_to_wire(report: SessionReport) -> pb.SessionSyncReport:
    return pb.SessionSyncReport(peer=report.peer, name=report.name, error=report.error or "",
                                collections=[pb.CollectionSyncReport(
                                    collection=c.collection, received=c.received, sent=c.sent,
                                    conflicts=c.conflicts, error=c.error or "",
                                    bundle_bytes_fetched=c.bundle_bytes_fetched,
                                    bundle_bytes_total=c.bundle_bytes_total,
                                    blocks_fetched=c.blocks_fetched,
                                    blocks_reused=c.blocks_reused, decision=c.decision or "",
                                    reason=c.reason or "")
                                    for c in report.collections])


def session_report_from_wire(message: pb.SessionSyncReport) -> SessionReport:
    return SessionReport(peer=message.peer, name=message.name, error=message.error or None,
                         collections=[CollectionReport(
                             collection=c.collection, received=c.received, sent=c.sent,
                             conflicts=c.conflicts, error=c.error or None,
                             bundle_bytes_fetched=c.bundle_bytes_fetched,
                             bundle_bytes_total=c.bundle_bytes_total,
                             blocks_fetched=c.blocks_fetched, blocks_reused=c.blocks_reused,
                             decision=c.decision or None, reason=c.reason or None)
                             for c in message.collections])
