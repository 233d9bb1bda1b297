"""``reachable_addresses``: which sync addresses a peer reports are recorded, by where it was
seen (the real processes are in tests/test_sync_pairing_netns.py)."""

from __future__ import annotations

import pytest
from meshdex.sync.addresses import caller_host, reachable_addresses

CASES = [
    # reported, seen at, recorded
    (("127.0.0.1:7711",), "10.0.0.2", ()),
    (("localhost:7711", "[::1]:7711"), "10.0.0.2", ()),
    (("0.0.0.0:7711",), "10.0.0.2", ("10.0.0.2:7711",)),
    (("[::]:7711",), "fd00::2", ("[fd00::2]:7711",)),
    (("laptop:7711", "127.0.0.1:7711", "10.0.0.2:7711"), "10.0.0.2",
     ("laptop:7711", "10.0.0.2:7711")),
    (("0.0.0.0:7711", "10.0.0.2:7711"), "10.0.0.2", ("10.0.0.2:7711",)),
    (("127.0.0.1:7711",), "127.0.0.1", ("127.0.0.1:7711",)),  # the same machine
    (("127.0.0.1:7711",), "localhost", ("127.0.0.1:7711",)),
    (("127.0.0.1:7711",), "desktop", ()),  # reached by name: another machine
    (("not an address",), "10.0.0.2", ()),
]


@pytest.mark.parametrize(("reported", "seen_at", "recorded"), CASES)
def test_recorded_addresses(reported, seen_at, recorded) -> None:
    assert reachable_addresses(reported, seen_at=seen_at) == recorded


@pytest.mark.parametrize(("peer", "host"), [
    ("ipv4:10.0.0.2:5555", "10.0.0.2"), ("ipv6:[fd00::2]:5555", "fd00::2"),
    ("unix:/run/meshdex.sock", "localhost")])
def test_caller_host(peer, host) -> None:
    assert caller_host(peer) == host
