"""LAN discovery: announce this node with mDNS and follow paired peers when their address moves.

Each serving node registers ``_meshdex._tcp.local.`` with its sync port and, in the TXT record,
its device id (``id``) and the protocol version (``v``). Every node browses the same type;
an announcement whose id is not a paired peer, or is this device, is ignored. For a paired
peer announced at an address it is not already dialled at, the address is *probed* before
it is recorded: a TLS handshake there must present a certificate that hashes to the paired
id (``fetch_certificate``, which needs the peer's private key to complete). Only then is the
address put first in the trust store, so the next session dials it — and that session's own
mutual TLS pins the certificate again. Discovery therefore only finds addresses: it never
adds a peer, and a machine announcing someone else's id changes nothing (logged as a warning).

Active only when ``discovery`` is on (the default) *and* the sync listener is bound to a
non-loopback address: a loopback node is reachable by nobody on the LAN, and announcing its
id there would only tell the network it exists. Everything runs on zeroconf's threads and one
worker thread of ours, started in the background: a slow or missing network never delays
serving, and a failure to start (no multicast) is logged and leaves sync working by address.

A node listening on a wildcard address keeps listening when the machine's address changes (a
laptop on another network, a new DHCP lease), but its announcement named the old address and
zeroconf's sockets were bound to it, so peers went on dialling where it no longer was until
``serve`` restarted. Every ``ADDRESS_CHECK_S`` the worker looks at the machine's addresses
again; when they differ it withdraws the announcement and announces (and browses) again on the
new ones, or stays silent while there are none (offline).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import ifaddr
from meshdex.node.config import is_loopback_host, split_host_port
from meshdex.sync.addresses import UNSPECIFIED_HOSTS as WILDCARD_HOSTS
from meshdex.sync.addresses import dial_address
from meshdex.sync.device_id import DeviceId
from meshdex.sync.errors import SyncError
from meshdex.sync.identity import DeviceIdentity
from meshdex.sync.transport import fetch_certificate
from meshdex.sync.trust import TrustStore
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

logger = logging.getLogger(__name__)

SERVICE_TYPE = "_meshdex._tcp.local."
TXT_DEVICE_ID, TXT_VERSION = "id", "v"
DISCOVERY_VERSION = "1"
RESOLVE_TIMEOUT_MS = 3000
PROBE_TIMEOUT_S = 5.0
ADDRESS_CHECK_S = 5.0


@dataclass(frozen=True, kw_only=True)
class Announcement:
    """What one node says on the LAN: who it is and where its sync listener is."""

    device_id: str
    addresses: tuple[str, ...]  # IP addresses (no port)
    port: int

    def service_info(self) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE, f"{self.device_id[:7].lower()}-{self.port}.{SERVICE_TYPE}",
            addresses=[socket.inet_pton(_family(a), a) for a in self.addresses],
            port=self.port, properties={TXT_DEVICE_ID: self.device_id,
                                        TXT_VERSION: DISCOVERY_VERSION},
            server=f"{self.device_id[:7].lower()}-meshdex.local.")


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def lan_addresses(listen: str) -> tuple[str, ...]:
    """The IP addresses a sync listener on ``listen`` is reachable at from the LAN: its host,
    or for a wildcard every non-loopback IPv4 address of this machine; () for loopback."""
    host, _port = split_host_port(listen)
    if host not in WILDCARD_HOSTS:
        return () if is_loopback_host(host) else (host,)
    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback]
    return tuple(sorted(set(found)))


def discovery_active(enabled: bool, listen: str) -> bool:
    """Whether a node configured so announces and browses (see the module docstring): a
    wildcard listener even while the machine has no LAN address yet (a node started before
    the network is up announces once it is)."""
    if not (enabled and listen):
        return False
    return split_host_port(listen)[0] in WILDCARD_HOSTS or bool(lan_addresses(listen))


class Discovery:
    """Announce ``announcement`` and keep paired peers' addresses current in ``trust``;
    with ``current_addresses`` (the machine's LAN addresses now), follow this machine's own
    address when it changes."""

    def __init__(self, *, identity: DeviceIdentity, trust: TrustStore,
                 announcement: Announcement,
                 probe: Callable[[str, DeviceId], object] | None = None,
                 current_addresses: Callable[[], tuple[str, ...]] | None = None) -> None:
        self.identity, self.trust, self.announcement = identity, trust, announcement
        self._current_addresses = current_addresses
        self._probe = probe or (lambda address, expected: fetch_certificate(
            address, expected, identity=identity, timeout_s=PROBE_TIMEOUT_S))
        self._found: queue.Queue[str | None] = queue.Queue()
        self._zeroconf: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._stopped = threading.Event()
        self._worker = threading.Thread(target=self._run, name="meshdex-discovery",
                                        daemon=True)

    def start(self) -> None:
        """Start in the background; returns at once."""
        self._worker.start()

    def _run(self) -> None:
        if not self.announcement.addresses:
            logger.info("no LAN address yet: announcing once this machine has one")
        elif not self._open():
            return
        next_check = time.monotonic() + ADDRESS_CHECK_S
        while not self._stopped.is_set():
            if time.monotonic() >= next_check:
                self._follow_own_addresses()
                next_check = time.monotonic() + ADDRESS_CHECK_S
            try:
                name = self._found.get(timeout=max(0.0, next_check - time.monotonic()))
            except queue.Empty:
                continue
            if name is None:
                break
            try:
                self._resolve(name)
            except Exception:  # one odd announcement must not end discovery
                logger.exception("handling the announcement %s failed", name)

    def _open(self) -> bool:
        """Announce and browse on the announcement's addresses; False if that failed."""
        try:
            interfaces = list(self.announcement.addresses)
            self._zeroconf = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only
                                      if all(":" not in a for a in interfaces)
                                      else IPVersion.All)
            self._zeroconf.register_service(self.announcement.service_info(),
                                            allow_name_change=True)
            self._browser = ServiceBrowser(self._zeroconf, SERVICE_TYPE,
                                           handlers=[self._on_change])
        except Exception:  # no multicast here: sync still works by address
            logger.warning("LAN discovery could not start; peers are dialled at their "
                           "recorded addresses", exc_info=True)
            self._close()
            return False
        logger.info("announcing %s on %s port %d", SERVICE_TYPE,
                    ", ".join(self.announcement.addresses), self.announcement.port)
        return True

    def _follow_own_addresses(self) -> None:
        """Announce again when this machine's addresses are no longer the announced ones."""
        if self._current_addresses is None:
            return
        addresses = self._current_addresses()
        if addresses == self.announcement.addresses:
            return
        logger.info("this machine's LAN address changed from %s to %s",
                    ", ".join(self.announcement.addresses) or "none",
                    ", ".join(addresses) or "none (offline)")
        self._close()
        self.announcement = replace(self.announcement, addresses=addresses)
        if addresses:
            self._open()

    def _close(self) -> None:
        """Withdraw the announcement and stop browsing; sockets on a vanished address may
        fail to say goodbye, which changes nothing."""
        browser, zeroconf, self._browser, self._zeroconf = (self._browser, self._zeroconf,
                                                             None, None)
        try:
            if browser is not None:
                browser.cancel()
            if zeroconf is not None:
                zeroconf.unregister_all_services()
        except Exception:
            logger.debug("withdrawing the announcement failed", exc_info=True)
        finally:
            if zeroconf is not None:
                zeroconf.close()

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        """On zeroconf's thread: only queue; resolving and probing block."""
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            self._found.put(name)

    def _resolve(self, name: str) -> None:
        if self._zeroconf is None:  # offline since it was queued
            return
        info = self._zeroconf.get_service_info(SERVICE_TYPE, name, timeout=RESOLVE_TIMEOUT_MS)
        if info is None or not info.port:
            return
        raw = (info.properties or {}).get(TXT_DEVICE_ID.encode())
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else ""
        try:
            device_id = DeviceId.parse(text)
        except SyncError:
            logger.debug("ignored %s: no valid device id in its TXT record", name)
            return
        if device_id == self.identity.device_id:
            return
        peer = self.trust.find(device_id)
        if peer is None:
            logger.debug("ignored %s: device %s is not paired", name, device_id.short)
            return
        for ip in info.parsed_addresses():
            address = dial_address(ip, info.port)
            if peer.addresses and peer.addresses[0] == address:
                return
            try:
                self._probe(address, device_id)
            except SyncError as error:
                logger.warning("ignored an announcement of paired device %s at %s: %s",
                               peer.name or device_id.short, address, error)
                continue
            self.trust.set_address(str(device_id), address)
            logger.info("paired device %s moved to %s (found on the LAN)",
                           peer.name or device_id.short, address)
            return

    def stop(self) -> None:
        self._stopped.set()
        self._found.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=10)
        self._close()
