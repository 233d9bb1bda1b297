"""LAN discovery between hosts in network namespaces joined by a bridge, each running
``meshdex serve`` on its LAN address: when A comes back on another address, B finds it by
mDNS and syncs with it there; when A listens on every address and its address changes while
it runs (a new DHCP lease), or it starts before it has one, B finds it there too; a host D
that announces A's device id (without A's key) gets neither trusted nor any data, and B keeps
dialling A where A really is."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from meshdex.sync.trust import TrustStore

from tests.netns import Lan, netns_available
from tests.sync_support import store_digest, wait_for, write_jsonl
from tests.test_sync_netns import HostProcess

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns_available(),
                                 reason="needs root and iproute2 (`.ci/run` installs it)")]

SYNC_PORT = 7711
NO_MODEL = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9/",
            "--embedder-model", "none")  # documents move, nothing is ever built
# Announces ANNOUNCED_ID at this host's address and port 7711, as a serving node would.
FORGER = """
import sys, time
from zeroconf import Zeroconf
from meshdex.sync.discovery import Announcement
device_id, address = sys.argv[1], sys.argv[2]
zeroconf = Zeroconf(interfaces=[address])
zeroconf.register_service(Announcement(device_id=device_id, addresses=(address,),
                                       port=7711).service_info(), allow_name_change=True)
print("announced", flush=True)
time.sleep(600)
"""


class WildcardHost(HostProcess):
    """A host listening for peers on every address, as the README's LAN set-up has it."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "MESHDEX_SYNC_LISTEN": f"0.0.0.0:{SYNC_PORT}",
                "MESHDEX_PAIR_LISTEN": "0.0.0.0:7712"}


def _lan(tmp_path: Path, names: tuple[str, ...], wildcard: tuple[str, ...] = ()):
    network = Lan(names).up()
    hosts = {name: (WildcardHost if name in wildcard else HostProcess)(network, name,
                                                                      tmp_path / name)
             for name in names}
    for host in hosts.values():
        host.meshdex("init", "-c", "notes", *NO_MODEL)
    return network, hosts


def _close(network: Lan, hosts: dict[str, HostProcess]) -> None:
    for host in hosts.values():
        host.stop(signal.SIGKILL)
    network.close()


def _pair(inviter: HostProcess, joiner: HostProcess) -> str:
    joiner.meshdex("join", inviter.meshdex("invite", "--collections", "notes").stdout.strip())
    return joiner.meshdex("id").stdout.strip()


def _first_address(host: HostProcess, peer_id: str) -> str:
    return TrustStore(host.data_dir).get(peer_id).addresses[0]


@pytest.fixture
def ab(tmp_path: Path):
    network, hosts = _lan(tmp_path, ("a", "b"))
    yield network, hosts
    _close(network, hosts)


@pytest.fixture
def ab_wildcard(tmp_path: Path):
    """Both listen on every address, as the README's LAN set-up has it: their invites and
    joins name the host name (which the other cannot resolve) and then their LAN address."""
    network, hosts = _lan(tmp_path, ("a", "b"), wildcard=("a", "b"))
    yield network, hosts
    _close(network, hosts)


@pytest.fixture
def abd(tmp_path: Path):
    network, hosts = _lan(tmp_path, ("a", "b", "d"))
    yield network, hosts
    _close(network, hosts)


def test_b_finds_a_after_a_moves_to_a_new_address(ab, tmp_path):
    network, hosts = ab
    a, b = hosts["a"], hosts["b"]
    a.start()
    b.start()
    a_id = _pair(b, a)
    assert _first_address(b, a_id) == f"{network.address('a')}:{SYNC_PORT}"
    a.stop()
    network.move("a", "10.231.0.77")
    a.start()
    wait_for(lambda: _first_address(b, a_id) == f"10.231.0.77:{SYNC_PORT}", timeout_s=60,
             what="b recording a's new address from its mDNS announcement")
    a.meshdex("--node", a.node_address, "add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / "moved.jsonl", {"after-move": "written after the move"}))
    synced = b.meshdex("--node", b.node_address, "sync", "--peer", a_id, "--json")
    [report] = json.loads(synced.stdout)
    assert report["error"] is None
    assert "after-move" in store_digest(b.data_dir, "notes")["live"]


def _synced_from_a(a: HostProcess, b: HostProcess, a_id: str, tmp_path: Path, key: str) -> None:
    a.meshdex("--node", a.node_address, "add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / f"{key}.jsonl", {key: f"written on a: {key}"}))
    synced = b.meshdex("--node", b.node_address, "sync", "--peer", a_id, "--json")
    [report] = json.loads(synced.stdout)
    assert report["error"] is None, report
    assert key in store_digest(b.data_dir, "notes")["live"]


def test_b_follows_a_whose_address_changes_while_it_runs(ab_wildcard, tmp_path):
    """Before, a announced the address it had at start until it restarted, and b dialled
    that one (sync from b failed) although a still listened on every address."""
    network, hosts = ab_wildcard
    a, b = hosts["a"], hosts["b"]
    a.start()
    b.start()
    a_id = _pair(b, a)
    wait_for(lambda: _first_address(b, a_id) == f"{network.address('a')}:{SYNC_PORT}",
             timeout_s=60, what="b finding a on the LAN")
    network.move("a", "10.231.0.78")
    wait_for(lambda: _first_address(b, a_id) == f"10.231.0.78:{SYNC_PORT}", timeout_s=60,
             what="b recording a's new address, announced without a restart")
    _synced_from_a(a, b, a_id, tmp_path, "after-lease")


def test_a_started_before_it_has_an_address_is_found_once_it_has_one(ab_wildcard, tmp_path):
    network, hosts = ab_wildcard
    a, b = hosts["a"], hosts["b"]
    b.start()
    a_id = _pair(b, a)  # a pairs while stopped: the join is a command of its own
    network.move("a", None)  # a's network is not up yet when its node starts
    a.start()
    network.move("a", "10.231.0.79")
    wait_for(lambda: _first_address(b, a_id) == f"10.231.0.79:{SYNC_PORT}", timeout_s=60,
             what="b recording the address a announced once it had one")
    _synced_from_a(a, b, a_id, tmp_path, "after-boot")


def test_a_forged_announcement_of_a_gets_d_neither_trust_nor_data(abd, tmp_path):
    network, hosts = abd
    a, b, d = hosts["a"], hosts["b"], hosts["d"]
    b.meshdex("add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / "b.jsonl", {"b-private": "only for paired devices"}))
    d.meshdex("add", "-c", "notes", "--jsonl",
              write_jsonl(tmp_path / "d.jsonl", {"d-planted": "should never reach b"}))
    for host in (a, b, d):
        host.start()
    a_id = _pair(b, a)
    a_address = _first_address(b, a_id)
    forger = subprocess.Popen(
        network.command("d", [sys.executable, "-c", FORGER, a_id, network.address("d")]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=d.env)
    try:
        assert forger.stdout.readline().strip() == "announced", forger.stderr.read()
        wait_for(lambda: any("ignored an announcement of paired device" in line
                             and network.address("d") in line for line in b.lines),
                 timeout_s=60, what="b probing d's forged announcement and refusing it")
    finally:
        forger.kill()
        forger.wait(10)
    peers = TrustStore(b.data_dir).all()
    assert [p.device_id for p in peers] == [a_id]          # d is not trusted
    assert peers[0].addresses[0] == a_address              # b still dials the real a
    assert "d-planted" not in store_digest(b.data_dir, "notes")["live"]
    assert "b-private" not in store_digest(d.data_dir, "notes")["live"]
    wait_for(lambda: "b-private" in store_digest(a.data_dir, "notes")["live"], timeout_s=60,
             what="b still syncing with the real a")
