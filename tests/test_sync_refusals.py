"""Who is refused, before any data moves: unpaired and removed devices, read-only peers'
writes, unshared collections. Real sync servers, real mutual TLS on loopback."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from meshdex.node.cli.main import cli
from meshdex.proto.meshdex.v1 import sync_pb2 as pb
from meshdex.proto.meshdex.v1 import sync_pb2_grpc
from meshdex.sync import wire
from meshdex.sync.client import run_session
from meshdex.sync.device_id import DeviceId
from meshdex.sync.identity import load_identity
from meshdex.sync.transport import fetch_certificate, pinned_channel
from meshdex.sync.trust import TrustStore, make_peer
from sync_support import pair, start_sync_node, stop_sync_node, wait_for


@pytest.fixture
def nodes(tmp_path: Path):
    started = [start_sync_node(tmp_path, name) for name in ("a", "b", "d")]
    yield started
    for node in started:
        stop_sync_node(node)


def _channel_from(caller, target) -> grpc.Channel:
    pem = fetch_certificate(target.sync_address, DeviceId.parse(target.device_id),
                            identity=caller.service.identity)
    return pinned_channel(target.sync_address, pem, identity=caller.service.identity)


def _hello(channel: grpc.Channel, caller) -> pb.HelloResponse:
    request = wire.hello_request_to_wire(wire.Hello(
        protocol_version=wire.PROTOCOL_VERSION, store_id=caller.node.store.device_id,
        collections=[]))
    return sync_pb2_grpc.MeshdexSyncStub(channel).Hello(request, timeout=10)


def test_an_unpaired_device_is_refused_before_any_data_moves(nodes) -> None:
    a, _, d = nodes
    a.add("notes", {"secret": "the launch codes"})
    # d trusts a (a's certificate is public), but a never paired with d
    pem = fetch_certificate(a.sync_address, DeviceId.parse(a.device_id),
                            identity=d.service.identity)
    d_view_of_a = TrustStore(d.node.data_dir).add(make_peer(
        cert_pem=pem.decode(), name="a", addresses=[a.sync_address], collections=["notes"],
        mode="read-write"))
    report = run_session(d.service.engine, d.service.identity, d.service.trust, d_view_of_a)
    # told what happened, not "peer unreachable": a answers, and refuses d's certificate
    assert report.error is not None and "refuses this device's certificate" in report.error
    assert "unreachable" not in report.error and "meshdex invite" in report.error
    assert not d.node.store.has_collection("notes") and d.node.store.last_seq == 0
    with _channel_from(d, a) as channel, pytest.raises(grpc.RpcError) as refused:
        _hello(channel, d)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_a_removed_peer_is_refused_on_its_next_call_on_an_open_connection(nodes) -> None:
    a, b, _ = nodes
    pair(a, b)
    with _channel_from(b, a) as channel:
        assert _hello(channel, b).device_id == a.device_id
        TrustStore(a.node.data_dir).remove(b.device_id)  # e.g. `meshdex peer rm` elsewhere
        with pytest.raises(grpc.RpcError) as refused:
            _hello(channel, b)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not paired" in refused.value.details()


def test_a_device_removed_by_its_peer_is_told_so(nodes) -> None:
    a, b, _ = nodes
    pair(a, b)
    TrustStore(a.node.data_dir).remove(b.device_id)  # `meshdex peer rm` on a
    a_seen_from_b = b.service.trust.get(DeviceId.parse(a.device_id))
    report = run_session(b.service.engine, b.service.identity, b.service.trust, a_seen_from_b)
    assert report.error is not None
    assert f"answers at {a.sync_address} but refuses this device's certificate" in report.error
    name = a_seen_from_b.name
    assert f"`meshdex peer rm {name}` here, then `meshdex invite` on {name}" in report.error


def test_a_dead_address_is_still_unreachable(nodes) -> None:
    a, b, _ = nodes
    pair(a, b)
    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{spare.getsockname()[1]}"
    a_at_a_dead_address = dataclasses.replace(
        b.service.trust.get(DeviceId.parse(a.device_id)), addresses=(dead,))
    report = run_session(b.service.engine, b.service.identity, b.service.trust,
                         a_at_a_dead_address)
    assert report.error is not None and "unreachable" in report.error
    assert "refuses" not in report.error


def test_a_read_only_peers_writes_are_refused(nodes) -> None:
    a, b, _ = nodes
    a.add("notes", {"n1": "from a"})
    pair(a, b, read_only=True)
    wait_for(lambda: b.texts("notes") == {"n1": "from a"}, what="b to receive a's notes")
    b.add("notes", {"n2": "from the read-only side"})
    batch = wire.ChangeBatch(collection="notes", last_seq=b.node.store.last_seq,
                             sender_store_id=b.node.store.device_id,
                             changes=list(b.service.engine.outgoing(
                                 "notes", after_seq=0, receiver_store_id="x",
                                 receiver_watermarks={}))[0].changes)
    with _channel_from(b, a) as channel, pytest.raises(grpc.RpcError) as refused:
        sync_pb2_grpc.MeshdexSyncStub(channel).PushChanges(iter([wire.batch_to_wire(batch)]),
                                                           timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "paired read-only" in refused.value.details()
    report = run_session(b.service.engine, b.service.identity, b.service.trust,
                         b.service.trust.get(a.device_id))
    assert report.error is None
    assert a.texts("notes") == {"n1": "from a"}


def test_an_unshared_collection_is_permission_denied(nodes) -> None:
    a, b, _ = nodes
    a.add("private", {"p": "not for b"})
    pair(a, b, ("notes",))
    with _channel_from(b, a) as channel, pytest.raises(grpc.RpcError) as refused:
        list(sync_pb2_grpc.MeshdexSyncStub(channel).PullChanges(
            pb.PullRequest(collection="private", caller_store_id="x"), timeout=10))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'private' is not shared" in refused.value.details()
    assert "private" not in [c.config.name for c in _hello(_channel_from(b, a), b).collections]


def test_the_private_key_never_appears_in_logs_status_or_errors(nodes, caplog) -> None:
    a, b, d = nodes
    caplog.set_level(logging.DEBUG)
    a.add("notes", {"n": "text"})
    pair(a, b)
    wait_for(lambda: b.texts("notes"), what="replication")
    TrustStore(a.node.data_dir).remove(b.device_id)
    run_session(b.service.engine, b.service.identity, b.service.trust,
                b.service.trust.get(a.device_id))
    outputs = [caplog.text]
    runner = CliRunner()
    for node in (a, b):
        for args in (["id", "--json"], ["peers", "--json"], ["conflicts", "--json"],
                     ["peer", "rm", d.device_id], ["join", "mdxi_broken"]):
            result = runner.invoke(cli, ["--data-dir", str(node.node.data_dir), *args])
            outputs.append(result.output)
    outputs.append(json.dumps([p.to_dict() for p in TrustStore(b.node.data_dir).all()]))
    for node in (a, b):
        key_pem = load_identity(node.node.data_dir).key_pem.decode()
        secret_lines = [line for line in key_pem.splitlines() if "PRIVATE" not in line]
        for text in outputs:
            assert "PRIVATE KEY" not in text
            assert not any(line in text for line in secret_lines)
