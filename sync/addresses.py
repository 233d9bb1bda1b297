"""Which sync addresses a peer reports can reach it from here.

A device reports its sync listener as it sees it: with the default ``sync_listen`` that is
``127.0.0.1:7711``, and ``sync_advertise`` may say ``0.0.0.0``. From another machine a
loopback address is this machine's own loopback (dialling it reached this device's own
listener, and every session failed its TLS handshake), and an unspecified one is no address
at all. So, where a peer reports its addresses (a joiner's when it pairs here, an inviter's
grant or token), unless the peer was reached over loopback (it runs on this machine): a
loopback address is dropped (its listener takes no connections from other machines; it dials
this device instead), and an unspecified one becomes the host the peer was seen at, with the
port it reported. A LAN announcement needs no such rule: discovery records an address only
once a handshake there presented the peer's certificate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from meshdex.index.errors import InvalidArgument
from meshdex.node.config import is_loopback_host, split_host_port
from meshdex.sync.trust import MAX_ADDRESSES

UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", ""})


def dial_address(host: str, port: int) -> str:
    """``HOST:PORT``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def caller_host(peer: str) -> str:
    """The host of a gRPC ``context.peer()``: ``ipv4:10.0.0.2:5555`` -> ``10.0.0.2``,
    ``ipv6:[::1]:5555`` -> ``::1``; a unix socket's caller is this machine (``localhost``)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return "localhost"
    return rest.rpartition(":")[0].strip("[]")


def _unspecified(host: str) -> bool:
    try:
        return host in UNSPECIFIED_HOSTS or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a host name


def lan_reachable(host: str) -> bool:
    """False for a loopback or unspecified host: one another machine reports is none of its."""
    return not (_unspecified(host) or is_loopback_host(host))


def reachable_addresses(reported: Iterable[str], *, seen_at: str) -> tuple[str, ...]:
    """The addresses of ``reported`` (a peer's ``HOST:PORT`` sync addresses) that can reach it
    from here, given ``seen_at``, the host it was reached at or called from: all of them when
    that is loopback (the peer runs on this machine); else without loopback addresses, and
    with ``seen_at`` for an unspecified host. Addresses that do not parse are dropped."""
    same_machine = not lan_reachable(seen_at)
    kept: list[str] = []
    for address in reported:
        try:
            host, port = split_host_port(address)
        except InvalidArgument:
            continue
        if not same_machine and _unspecified(host):
            address = dial_address(seen_at, port)
        elif not same_machine and is_loopback_host(host):
            continue
        if address not in kept:
            kept.append(address)
    return tuple(kept[:MAX_ADDRESSES])
