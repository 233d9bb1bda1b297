"""Pairing two hosts in network namespaces, each running ``meshdex serve``, where one reports
a sync address that means nothing on the other: loopback (the default ``sync_listen``
127.0.0.1:7711) or unspecified (``sync_advertise`` 0.0.0.0). Before, the other host recorded
it as reported and dialled 127.0.0.1:7711, its own listener: every session it ran failed a
TLS handshake ("last error ... Tls handshake failed"). Now a loopback address is not recorded
(the peer dials), an unspecified one becomes the address the peer was seen at, and documents
move both ways."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from meshdex.sync.trust import TrustStore

from tests.netns import Lan, netns_available
from tests.sync_support import store_digest, wait_for, write_jsonl
from tests.test_sync_netns import HostProcess

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns_available(),
                                 reason="needs root and iproute2 (`.ci/run` installs it)")]

NO_MODEL = ("--embedder", "http", "--embedder-url", "http://127.0.0.1:9/",
            "--embedder-model", "none")  # documents move, nothing is ever built


class ConfiguredHost(HostProcess):
    """A host whose sync settings are ``settings`` (``MESHDEX_*`` variables; one set to None
    is left at its default)."""

    def __init__(self, lan: Lan, host: str, data_dir: Path,
                 settings: dict[str, str | None]) -> None:
        super().__init__(lan, host, data_dir)
        self.settings = settings

    @property
    def env(self) -> dict[str, str]:
        env = {**super().env, **self.settings}
        return {k: v for k, v in env.items() if v is not None}


DEFAULT_SYNC = {"MESHDEX_SYNC_LISTEN": None, "MESHDEX_PAIR_LISTEN": None}  # 127.0.0.1:7711/2
WILDCARD = {"MESHDEX_SYNC_LISTEN": "0.0.0.0:7711", "MESHDEX_PAIR_LISTEN": "0.0.0.0:7712"}
LOOPBACK_SYNC = {"MESHDEX_SYNC_LISTEN": None, "MESHDEX_PAIR_LISTEN": "0.0.0.0:7712"}
UNSPECIFIED_ADVERTISED = {**WILDCARD, "MESHDEX_SYNC_ADVERTISE": "0.0.0.0"}


@pytest.fixture
def hosts(tmp_path: Path):
    network = Lan(("a", "b")).up()
    started: list[ConfiguredHost] = []

    def start(a: dict[str, str | None], b: dict[str, str | None]):
        for name, settings in (("a", a), ("b", b)):
            host = ConfiguredHost(network, name, tmp_path / name, settings)
            host.meshdex("init", "-c", "notes", *NO_MODEL)
            started.append(host.start())
        return started

    yield start
    for host in started:
        host.stop(signal.SIGKILL)
    network.close()


def _join(inviter: HostProcess, joiner: HostProcess) -> str:
    token = inviter.meshdex("invite", "--collections", "notes").stdout.strip()
    return joiner.meshdex("join", token).stdout


def _peer(host: HostProcess) -> dict:
    (peer,) = json.loads(host.meshdex("peers", "--json").stdout)
    return peer


def _both_ways(a: HostProcess, b: HostProcess, tmp_path: Path) -> None:
    """A document added on each host arrives on the other."""
    for source, target in ((a, b), (b, a)):
        key = f"from-{source.host}.md"
        source.meshdex("--node", source.node_address, "add", "-c", "notes", "--jsonl",
                       write_jsonl(tmp_path / f"{key}.jsonl", {key: f"Written on {source.host}."}))
        wait_for(lambda t=target, k=key: k in store_digest(t.data_dir, "notes")["live"],
                 timeout_s=60, what=f"{key} on {target.host}")


def _no_own_dialling(host: HostProcess) -> None:
    assert _peer(host)["last_error"] is None
    assert "Tls handshake" not in "".join(host.lines)


def test_a_joiner_on_the_default_loopback_sync_listen_is_not_dialled_at_loopback(hosts,
                                                                               tmp_path):
    a, b = hosts(WILDCARD, DEFAULT_SYNC)
    _join(a, b)
    assert TrustStore(a.data_dir).all()[0].addresses == ()  # not a's own 127.0.0.1:7711
    assert "(dials us)" in a.meshdex("peers").stdout
    _both_ways(a, b, tmp_path)
    _no_own_dialling(a)


def test_an_inviter_on_a_loopback_sync_listen_is_not_dialled_at_loopback(hosts, tmp_path):
    a, b = hosts(LOOPBACK_SYNC, WILDCARD)
    joined = _join(a, b)
    assert TrustStore(b.data_dir).all()[0].addresses == ()  # not b's own 127.0.0.1:7711
    assert "gave no sync address this device can reach" in joined
    _both_ways(a, b, tmp_path)
    _no_own_dialling(b)


def test_a_joiner_advertising_an_unspecified_address_is_dialled_where_it_was_seen(hosts,
                                                                                  tmp_path):
    a, b = hosts(WILDCARD, UNSPECIFIED_ADVERTISED)
    _join(a, b)
    assert TrustStore(a.data_dir).all()[0].addresses == (f"{b.lan.address('b')}:7711",)
    synced = a.meshdex("sync", "--json")  # a session a dials: exit 0 only if b answered
    assert json.loads(synced.stdout)[0]["error"] is None
    _both_ways(a, b, tmp_path)
