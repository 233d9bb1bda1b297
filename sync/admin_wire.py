"""Conversion between ``meshdex.v1.MeshdexSyncAdmin`` messages and the admin records.

Kept apart from ``wire.py`` (the peer protocol) because these records live above the
session code that ``wire.py`` serves.
"""

from __future__ import annotations

from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.sync.client import CollectionReport, SessionReport


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
                                    for c in report.collections],
                                not_shared_back=report.not_shared_back,
                                held_read_only=report.held_read_only)


def session_report_from_wire(message: pb.SessionSyncReport) -> SessionReport:
    return SessionReport(peer=message.peer, name=message.name, error=message.error or None,
                         collections=[CollectionReport(
                             collection=c.collection, received=c.received, sent=c.sent,
                             conflicts=c.conflicts, error=c.error or None,
                             bundle_bytes_fetched=c.bundle_bytes_fetched,
                             bundle_bytes_total=c.bundle_bytes_total,
                             blocks_fetched=c.blocks_fetched, blocks_reused=c.blocks_reused,
                             decision=c.decision or None, reason=c.reason or None)
                             for c in message.collections],
                         not_shared_back=list(message.not_shared_back),
                         held_read_only=message.held_read_only)
