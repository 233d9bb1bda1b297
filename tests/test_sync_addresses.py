"""A peer with several recorded addresses (its host name and LAN addresses from pairing, what
discovery found): a session says hello at each in turn until the pinned device answers, and
puts that address first. Real sync listeners and real mutual TLS on loopback: one address
where nothing listens, one where another device (not the pinned one) answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from meshdex.sync.service import advertised_addresses
from sync_support import pair, quiet_nodes_a_b_paired, start_sync_node, stop_sync_node

NOTHING_LISTENS = "127.0.0.1:9"


@pytest.fixture
def nodes(tmp_path):
    started = quiet_nodes_a_b_paired(tmp_path)
    yield started
    for node in started.values():
        stop_sync_node(node)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An address where connections are never answered, as at a host gone from the network:
    a listening socket whose backlog is full drops every further SYN."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    queued = []
    for _ in range(3):
        pending = socket.socket()
        pending.setblocking(False)
        pending.connect_ex(address)
        queued.append(pending)
    yield f"{address[0]}:{address[1]}"
    for pending in queued:
        pending.close()
    listener.close()


def _record(node, peer_id: str, addresses: tuple[str, ...]) -> None:
    trust = node.service.trust
    trust.add(replace(trust.get(peer_id), addresses=addresses), replace_existing=True)


def test_a_session_reaches_the_peer_at_its_first_address_that_answers(nodes):
    """Before, only the first address was dialled: b could not reach a at all."""
    a, b, d = nodes["a"], nodes["b"], nodes["d"]
    a.add("notes", {"n1": "a note written on a"})
    # nothing at the first; at the second another device, whose certificate is not a's
    _record(b, a.device_id, (NOTHING_LISTENS, d.sync_address, a.sync_address))
    [report] = b.service.sync_now(a.device_id)
    assert report.error is None, report
    assert b.texts("notes") == {"n1": "a note written on a"}
    assert b.service.trust.get(a.device_id).addresses == (
        a.sync_address, NOTHING_LISTENS, d.sync_address)  # dialled first from now on


def test_an_address_that_drops_packets_costs_the_connect_deadline_not_grpcs_20_s(
        nodes, black_hole, monkeypatch):
    """Before, gRPC's own connect deadline (20 s) passed at an old address that drops packets
    before the peer's next address was tried, in every session until one answered."""
    monkeypatch.setattr("meshdex.sync.transport.CONNECT_TIMEOUT_S", 1.0)
    a, b = nodes["a"], nodes["b"]
    a.add("notes", {"n1": "a note written on a"})
    _record(b, a.device_id, (black_hole, a.sync_address))
    started = time.monotonic()
    [report] = b.service.sync_now(a.device_id)
    assert report.error is None, report
    assert time.monotonic() - started < 15, "the dropped address held the session up"
    assert b.texts("notes") == {"n1": "a note written on a"}
    assert b.service.trust.get(a.device_id).addresses == (a.sync_address, black_hole)


def test_when_no_address_answers_the_report_names_each(nodes):
    a, b, d = nodes["a"], nodes["b"], nodes["d"]
    _record(b, a.device_id, (NOTHING_LISTENS, d.sync_address))
    [report] = b.service.sync_now(a.device_id)
    assert report.error.startswith("hello: no answer at any of the peer's addresses: "
                                   f"{NOTHING_LISTENS}: "), report.error
    assert f"; {d.sync_address}: hello: peer unreachable or failed" in report.error
    assert b.service.trust.get(a.device_id).addresses == (NOTHING_LISTENS, d.sync_address)


def test_a_wildcard_listener_advertises_its_host_name_then_its_lan_addresses(nodes,
                                                                             monkeypatch):
    """A host name the LAN does not resolve is common at home: the addresses behind it go in
    the invite and the join too, and a session finds the one that answers."""
    config = nodes["a"].service.config
    monkeypatch.setattr("meshdex.sync.service.socket.gethostname", lambda: "laptop")
    monkeypatch.setattr("meshdex.sync.service.lan_addresses",
                        lambda listen: ("10.0.0.5", "192.168.1.7"))
    assert advertised_addresses(config, "0.0.0.0:7711") == (
        "laptop:7711", "10.0.0.5:7711", "192.168.1.7:7711")
    assert advertised_addresses(config, "192.168.1.7:7711") == ("192.168.1.7:7711",)
    advertising = replace(config, sync_advertise="desk.example")
    assert advertised_addresses(advertising, "0.0.0.0:7711") == ("desk.example:7711",)


def test_a_device_pairing_after_the_lan_address_changed_is_given_the_new_one(tmp_path,
                                                                             monkeypatch):
    """The pairing grant named the addresses the inviter had when serve started: after a new
    DHCP lease a device that paired was sent where the inviter no longer was."""
    lan = ["10.9.9.1"]
    monkeypatch.setattr("meshdex.sync.service.lan_addresses", lambda listen: tuple(lan))
    inviter = start_sync_node(tmp_path, "desk", sync_listen="0.0.0.0:0",
                              sync_interval_s=3600, discovery=False)
    joiner = start_sync_node(tmp_path, "laptop", sync_interval_s=3600)
    try:
        port = inviter.sync_address.rpartition(":")[2]
        lan[:] = ["10.9.9.2"]  # the lease changed under the running node
        pair(inviter, joiner)
        recorded = joiner.service.trust.get(inviter.device_id).addresses
        assert f"10.9.9.2:{port}" in recorded and f"10.9.9.1:{port}" not in recorded, recorded
    finally:
        stop_sync_node(joiner)
        stop_sync_node(inviter)
