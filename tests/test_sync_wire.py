"""Peer messages are validated at the edge: every malformed field is a ProtocolViolation
naming it, and a malformed push over real mTLS is INVALID_ARGUMENT with nothing applied."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from meshdex.node.hlc import HLCTimestamp
from meshdex.node.records import ChangeOp, RemoteChange
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import wire
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import ProtocolViolation
from meshdex.sync.transport import fetch_certificate, pinned_channel
from sync_support import pair, start_sync_node, stop_sync_node

GOOD = pb.WireChange(doc_id="d", hlc="0000000000000001-00000000-dev", origin_device="dev",
                     origin_seq=1, text="hello")


def _change(**fields) -> pb.WireChange:
    message = pb.WireChange()
    message.CopyFrom(GOOD)
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def test_a_change_round_trips() -> None:
    change = RemoteChange(doc_id="d", op=ChangeOp.UPSERT, origin_device="dev", origin_seq=3,
                          hlc=HLCTimestamp(physical_ms=5, logical=1, device_id="dev"),
                          text="t", metadata={"k": [1]}, source="s")
    assert wire.change_from_wire(wire.change_to_wire(change)) == change


@pytest.mark.parametrize(("message", "complaint"), [
    (_change(hlc="yesterday"), "malformed HLC"),
    (_change(doc_id=""), "document id"),
    (_change(text=""), "text"),
    (_change(metadata_json="[1]"), "JSON object"),
    (_change(metadata_json="{"), "not valid JSON"),
    (_change(origin_device=""), "origin device"),
    (_change(doc_id="x" * 600), "bytes"),
])
def test_malformed_changes_are_protocol_violations(message, complaint: str) -> None:
    with pytest.raises(ProtocolViolation, match=complaint):
        wire.change_from_wire(message)


@pytest.mark.parametrize(("batch", "complaint"), [
    (pb.ChangeBatch(collection="bad name"), "invalid batch"),
    (pb.ChangeBatch(collection="c", changes=[GOOD] * (wire.MAX_BATCH_CHANGES + 1)), "limit"),
    (pb.ChangeBatch(collection="c", config=pb.CollectionConfig(name="other")), "another"),
    (pb.ChangeBatch(collection="c", changes=[GOOD]), "sender store id"),
    (pb.ChangeBatch(collection="c", sender_store_id="s", conflicts=[pb.ConflictInfo(
        collection="c", doc_id="d", losing_hlc="yesterday")]), "conflict record of 'd'"),
    (pb.ChangeBatch(collection="c", sender_store_id="s", conflicts=[pb.ConflictInfo(
        collection="other", doc_id="d", losing_hlc=GOOD.hlc, winning_hlc=GOOD.hlc,
        origin_device="dev")]), "conflict record of another collection"),
    (pb.ChangeBatch(collection="c", changes=[GOOD] * wire.MAX_BATCH_CHANGES,
                    conflicts=[pb.ConflictInfo()]), "limit"),
])
def test_malformed_batches_are_protocol_violations(batch, complaint: str) -> None:
    with pytest.raises(ProtocolViolation, match=complaint):
        wire.batch_from_wire(batch)


def test_a_malformed_push_is_refused_whole_and_nothing_is_applied(tmp_path: Path) -> None:
    a, b = start_sync_node(tmp_path, "a"), start_sync_node(tmp_path, "b")
    try:
        a.add("notes", {"n": "kept"})
        pair(a, b)
        pem = fetch_certificate(a.sync_address, DeviceId.parse(a.device_id),
                                identity=b.service.identity)
        batch = pb.ChangeBatch(collection="notes", last_seq=2, sender_store_id="dev",
                               changes=[_change(doc_id="ok"), _change(hlc="garbage")])
        with pinned_channel(a.sync_address, pem, identity=b.service.identity) as channel, \
                pytest.raises(grpc.RpcError) as refused:
            sync_pb2_grpc.MeshdexSyncStub(channel).PushChanges(iter([batch]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed HLC" in refused.value.details()
        assert a.texts("notes") == {"n": "kept"}
    finally:
        stop_sync_node(a)
        stop_sync_node(b)
