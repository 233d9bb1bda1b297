"""LAN discovery with real zeroconf (mDNS on loopback here; across namespaces in
tests/test_discovery_netns.py), real sync listeners and real TLS probes: a paired peer's moved
address is followed; an announcement of a paired id by a device without its key, and an
unpaired id, change nothing."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from meshdex.sync import discovery as discovery_module
from meshdex.sync.discovery import Announcement, Discovery, discovery_active, lan_addresses

from tests.sync_support import quiet_nodes_a_b_paired, start_sync_node, stop_sync_node, wait_for

STALE_ADDRESS = "127.0.0.1:9"  # where the peer used to be: nothing listens there

ACTIVE = [
    # (discovery, sync_listen, active)
    (True, "127.0.0.1:7711", False),   # loopback: nobody on the LAN can dial it
    (True, "localhost:7711", False),
    (True, "10.1.2.3:7711", True),
    (False, "10.1.2.3:7711", False),   # discovery = false
    (True, "", False),                 # sync off
]


@pytest.mark.parametrize(("enabled", "listen", "active"), ACTIVE)
def test_discovery_runs_only_when_on_and_listening_beyond_loopback(enabled, listen, active):
    assert discovery_active(enabled, listen) is active


def test_a_wildcard_listener_is_active_before_the_machine_has_a_lan_address(monkeypatch):
    """A node started before the network is up (a laptop's login) announces once it is up;
    before, it never did until it restarted."""
    monkeypatch.setattr(discovery_module.ifaddr, "get_adapters", lambda: [])
    assert lan_addresses("0.0.0.0:7711") == ()
    assert discovery_active(True, "0.0.0.0:7711") is True
    assert discovery_active(False, "0.0.0.0:7711") is False


def test_a_loopback_node_starts_no_discovery(tmp_path):
    node = start_sync_node(tmp_path, "a")  # sync on 127.0.0.1, discovery on by default
    try:
        assert node.service.config.discovery is True
        assert node.service.discovery is None
    finally:
        stop_sync_node(node)


def _announcer(node, *, device_id: str | None = None, port: int | None = None) -> Discovery:
    """A Discovery announcing ``node``'s listener (or a forged id/port) on loopback."""
    discovery = Discovery(identity=node.service.identity, trust=node.service.trust,
                          announcement=Announcement(
                              device_id=device_id or node.device_id, addresses=("127.0.0.1",),
                              port=port or int(node.sync_address.rpartition(":")[2])))
    discovery.start()
    return discovery


@pytest.fixture
def nodes(tmp_path):
    started = quiet_nodes_a_b_paired(tmp_path)
    trust = started["b"].service.trust
    peer = trust.get(started["a"].device_id)
    trust.add(replace(peer, addresses=(STALE_ADDRESS,)), replace_existing=True)
    running: list[Discovery] = []
    yield started, running
    for discovery in running:
        discovery.stop()
    for node in started.values():
        stop_sync_node(node)


def test_b_follows_a_to_its_announced_address(nodes):
    started, running = nodes
    a, b = started["a"], started["b"]
    running += [_announcer(b), _announcer(a)]
    wait_for(lambda: b.service.trust.get(a.device_id).addresses[0] == a.sync_address,
             timeout_s=30, what="b recording a's announced address")
    assert b.service.trust.get(a.device_id).addresses == (a.sync_address, STALE_ADDRESS)


def test_forged_and_unpaired_announcements_change_nothing(nodes, caplog):
    started, running = nodes
    a, b, d = started["a"], started["b"], started["d"]
    caplog.set_level(logging.DEBUG, logger="meshdex.sync.discovery")
    running.append(_announcer(b))
    running.append(_announcer(d, device_id=a.device_id))  # d claims to be a
    running.append(_announcer(d))  # d as itself: not paired with b
    wait_for(lambda: any("ignored an announcement of paired device" in r.getMessage()
                         and d.sync_address in r.getMessage() for r in caplog.records),
             timeout_s=30, what="b probing d's forged announcement and refusing it")
    wait_for(lambda: any("is not paired" in r.getMessage() for r in caplog.records),
             timeout_s=30, what="b ignoring d's own (unpaired) announcement")
    peers = {p.device_id: p for p in b.service.trust.all()}
    assert set(peers) == {a.device_id}  # d is not trusted
    assert peers[a.device_id].addresses == (STALE_ADDRESS,)  # a's address not hijacked


def test_no_multicast_logs_a_warning_and_the_node_keeps_syncing(nodes, caplog):
    """Discovery that cannot start (here: an address no interface has) says so and leaves
    the node syncing with peers at their recorded addresses."""
    started, running = nodes
    a, b = started["a"], started["b"]
    discovery = Discovery(identity=a.service.identity, trust=a.service.trust,
                          announcement=Announcement(device_id=a.device_id,
                                                    addresses=("192.0.2.1",), port=7711))
    running.append(discovery)
    discovery.start()
    wait_for(lambda: any("LAN discovery could not start" in r.getMessage()
                         for r in caplog.records), timeout_s=30, what="the warning")
    report = a.service.sync_now(b.device_id)[0]
    assert report.error is None


def test_set_address_never_adds_a_peer(nodes):
    started, _ = nodes
    trust = started["b"].service.trust
    assert trust.set_address(started["d"].device_id, "127.0.0.1:7711") is None
    assert [p.device_id for p in trust.all()] == [started["a"].device_id]
