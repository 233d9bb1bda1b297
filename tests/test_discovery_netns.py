"""LAN discovery between hosts in network namespaces joined by a bridge, each running
``meshdex serve`` on its LAN address: when A comes back on another address, B finds it by
mDNS and syncs with it there; a host D that announces A's device id (without A's key) gets
neither trusted nor any data, and B keeps dialling A where A really is."""

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


def _lan(tmp_path: Path, names: tuple[str, ...]):
    network = Lan(names).up()
    hosts = {name: HostProcess(network, name, tmp_path / name) for name in names}
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
