"""Three hosts A, B, C in network namespaces, each running ``meshdex serve``: an add on A
becomes searchable on B and C, a delete on B disappears everywhere, and after A and C edit
the same document (and others) while C is cut off, healing converges all three to identical
documents, tombstones and conflict records (store digests compared)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from netns import Lan, netns_available
from sync_support import SyncServeProcess, store_digest, wait_for, write_jsonl

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns_available(),
                                 reason="needs root and iproute2 (`.ci/run` installs it)")]


class HostProcess(SyncServeProcess):
    """``SyncServeProcess`` inside a namespace, listening for peers on its LAN address."""

    def __init__(self, lan: Lan, host: str, data_dir: Path) -> None:
        super().__init__(data_dir=data_dir, sync_port=7711, pair_port=7712)
        self.lan, self.host = lan, host

    @property
    def env(self) -> dict[str, str]:
        address = self.lan.address(self.host)
        return {**super().env, "MESHDEX_SYNC_LISTEN": f"{address}:7711",
                "MESHDEX_PAIR_LISTEN": f"{address}:7712"}

    def start(self) -> HostProcess:
        self.lines = []
        self.process = subprocess.Popen(
            self.lan.command(self.host, [*self.launcher, "serve", "--listen", "127.0.0.1:7710"]),
            stderr=subprocess.PIPE, text=True, env=self.env)
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on" in line:
                self.node_address = "127.0.0.1:7710"
                threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
                return self
        raise AssertionError("serve exited early:\n" + "".join(self.lines))

    def meshdex(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.lan.command(self.host, [*self.launcher, *args]),
                                capture_output=True, text=True, env=self.env, timeout=300)
        if check:
            assert result.returncode == 0, result.stderr
        return result


@pytest.fixture
def lan(tmp_path: Path):
    network = Lan(("a", "b", "c")).up()
    hosts = {name: HostProcess(network, name, tmp_path / name) for name in network.hosts}
    yield network, hosts
    for host in hosts.values():
        host.stop(signal.SIGKILL)
    network.close()


def _top_hit(host: HostProcess, query: str) -> str | None:
    result = host.meshdex("--node", host.node_address, "search", query, "--json", check=False)
    if result.returncode != 0:
        return None
    hits = json.loads(result.stdout)["hits"]
    return hits[0]["document_id"] if hits else None


def _converged(hosts: dict[str, HostProcess]) -> bool:
    digests = [store_digest(h.data_dir, "default") for h in hosts.values()]
    return all(d == digests[0] for d in digests)


@pytest.mark.model
def test_three_hosts_replicate_delete_and_converge_after_a_partition(lan, tmp_path) -> None:
    network, hosts = lan
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    a.meshdex("add", "--jsonl", write_jsonl(tmp_path / "a.jsonl", {
        "boats.md": "A sailing boat needs wind; a rowing boat needs oars.",
        "fruit.md": "Apples and pears grow on trees in the orchard.",
        "shared.md": "The meeting is on Monday."}))
    for host in hosts.values():
        host.start()
    for inviter, joiner in ((a, b), (a, c), (b, c)):
        token = inviter.meshdex("invite").stdout.strip()
        assert "paired with" in joiner.meshdex("join", token).stdout
    for host in (b, c):
        wait_for(lambda h=host: _top_hit(h, "what moves a sailing boat") == "boats.md",
                 timeout_s=300, what=f"a's document searchable on {host.host}")

    b.meshdex("--node", b.node_address, "rm", "fruit.md")
    wait_for(lambda: all("fruit.md" not in store_digest(h.data_dir, "default")["live"]
                         for h in hosts.values()), timeout_s=60, what="b's delete everywhere")

    network.partition("c")
    a.meshdex("--node", a.node_address, "add", "--jsonl", write_jsonl(tmp_path / "a2.jsonl", {
        "shared.md": "The meeting moved to Tuesday (A).", "only-a.md": "Written on A."}))
    c.meshdex("--node", c.node_address, "add", "--jsonl", write_jsonl(tmp_path / "c2.jsonl", {
        "shared.md": "The meeting moved to Wednesday (C).", "only-c.md": "Written on C."}))
    c.meshdex("--node", c.node_address, "rm", "boats.md")
    wait_for(lambda: "only-a.md" in store_digest(b.data_dir, "default")["live"],
             what="a's edits on b during the partition")
    assert "only-c.md" not in store_digest(a.data_dir, "default")["live"]  # really cut off

    network.heal("c")
    wait_for(lambda: _converged(hosts), timeout_s=120, what="all three to converge")
    final = store_digest(a.data_dir, "default")
    assert set(final["live"]) == {"shared.md", "only-a.md", "only-c.md"}
    assert final["deleted"] == ["boats.md", "fruit.md"]
    assert final["live"]["shared.md"][0] == "The meeting moved to Wednesday (C)."  # later HLC
    # the losing edit is kept, not dropped, and (digests converged) on every device alike
    kept = [(doc_id, text) for doc_id, *_, text, _, _ in final["conflicts"]]
    assert ("shared.md", "The meeting moved to Tuesday (A).") in kept
