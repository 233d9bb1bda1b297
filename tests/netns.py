"""Separate hosts for multi-device tests: Linux network namespaces joined by a bridge.

``Lan`` creates one namespace per host (``eth0`` with ``10.231.0.N/24``, and ``lo``) plus a
switch namespace holding the bridge, every host's veth peer plugged into it — nothing is
added to the machine's own network namespace, and no address outside these namespaces is
ever dialled. ``partition(host)`` takes a host's link down, ``heal(host)`` brings it back.
``move(host, address)`` readdresses a host. ``Lan.run(host, argv)`` starts a process inside a
host. Names carry the test process id, so parallel runs do not collide; ``close()`` deletes
everything (also after a failed test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

SUBNET_PREFIX = "10.231.0."
SUBNET_BITS = 24


def netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Lan:
    hosts: tuple[str, ...]
    tag: str = field(default_factory=lambda: f"mdx{os.getpid() % 100000}")
    created: list[str] = field(default_factory=list)
    moved: dict[str, str | None] = field(default_factory=dict)  # host -> address after move()

    def ns(self, host: str) -> str:
        return f"{self.tag}{host}"

    @property
    def switch(self) -> str:
        return f"{self.tag}sw"

    def address(self, host: str) -> str | None:
        return self.moved.get(host, f"{SUBNET_PREFIX}{self.hosts.index(host) + 1}")

    def move(self, host: str, address: str | None) -> None:
        """Give ``host`` another address on the LAN (as a new DHCP lease would), or none
        (``None``: its network is not up)."""
        ns, current = self.ns(host), self.address(host)
        if current is not None:
            _ip("-n", ns, "addr", "del", f"{current}/{SUBNET_BITS}", "dev", "eth0")
        if address is not None:
            _ip("-n", ns, "addr", "add", f"{address}/{SUBNET_BITS}", "dev", "eth0")
        self.moved[host] = address

    def up(self) -> Lan:
        try:
            _ip("netns", "add", self.switch)
            self.created.append(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self.hosts:
                ns, port = self.ns(host), f"v{host}"
                _ip("netns", "add", ns)
                self.created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port,
                    "netns", self.switch)
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/{SUBNET_BITS}", "dev",
                    "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", self.switch, "link", "set", port, "master", "br0")
                _ip("-n", self.switch, "link", "set", port, "up")
        except BaseException:
            self.close()
            raise
        return self

    def partition(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", f"v{host}", "down")

    def heal(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", f"v{host}", "up")

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def close(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.created.clear()
