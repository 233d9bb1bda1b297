"""Hybrid logical clock (HLC): timestamps that order writes across devices.

A stamp is (physical milliseconds, logical counter, device id). Within one device stamps only
grow, even if the wall clock jumps backwards (the logical counter carries the order until the
wall clock catches up). Merging a remote stamp (``update``) moves the local clock past it, so
a write made after receiving a change is ordered after that change on every device. Ties
between devices (same physical and logical parts) are broken by the device id, which makes
last-writer-wins resolution deterministic everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshdex.index.errors import InvalidArgument
from meshdex.node.errors import ClockSkew

# How far ahead of this device's clock a received stamp may be. Clocks of devices kept by NTP
# drift by seconds; a stamp days ahead (a wrong clock, or a forged file) would win
# last-writer-wins against every honest edit until real time caught up.
DEFAULT_MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
MAX_PHYSICAL_MS = 2**64 - 1
MAX_LOGICAL = 2**32 - 1
_PACKED_CLOCK_BYTES = 12  # 8-byte physical ms + 4-byte logical counter, big-endian


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch from the system clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, order=True, kw_only=True)
class HLCTimestamp:
    """One HLC stamp; compares by (physical_ms, logical, device_id)."""

    physical_ms: int
    logical: int
    device_id: str

    def __post_init__(self) -> None:
        if not 0 <= self.physical_ms <= MAX_PHYSICAL_MS:
            raise InvalidArgument(f"HLC physical_ms out of range: {self.physical_ms}")
        if not 0 <= self.logical <= MAX_LOGICAL:
            raise InvalidArgument(f"HLC logical counter out of range: {self.logical}")

    def pack(self) -> bytes:
        """Bytes that sort like the stamp: physical, logical, then the device id (UTF-8)."""
        return (
            self.physical_ms.to_bytes(8, "big")
            + self.logical.to_bytes(4, "big")
            + self.device_id.encode("utf-8")
        )

    @classmethod
    def unpack(cls, data: bytes) -> HLCTimestamp:
        if len(data) < _PACKED_CLOCK_BYTES:
            raise InvalidArgument(f"packed HLC stamp too short: {len(data)} bytes")
        return cls(
            physical_ms=int.from_bytes(data[:8], "big"),
            logical=int.from_bytes(data[8:12], "big"),
            device_id=data[_PACKED_CLOCK_BYTES:].decode("utf-8"),
        )

    def to_str(self) -> str:
        """Text form ``physical-logical-device`` (for JSON and logs)."""
        return f"{self.physical_ms:016x}-{self.logical:08x}-{self.device_id}"

    @classmethod
    def from_str(cls, text: str) -> HLCTimestamp:
        try:
            physical, logical, device = text.split("-", 2)
            return cls(physical_ms=int(physical, 16), logical=int(logical, 16), device_id=device)
        except ValueError as error:
            raise InvalidArgument(f"malformed HLC stamp {text!r}: {error}") from error


class HybridLogicalClock:
    """The clock of one device. Thread-safe.

    ``last`` seeds the clock (e.g. the newest stamp persisted in the store) so that stamps
    stay monotonic across restarts even if the wall clock was set back meanwhile.
    """

    def __init__(
        self,
        device_id: str,
        *,
        last: HLCTimestamp | None = None,
        wall_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not device_id:
            raise InvalidArgument("HLC device id must be non-empty")
        self.device_id = device_id
        self._wall_ms = wall_ms
        self._physical_ms = last.physical_ms if last else 0
        self._logical = last.logical if last else 0
        self._lock = threading.Lock()

    def now(self) -> HLCTimestamp:
        """A new stamp for a local event, greater than every stamp issued or merged before."""
        with self._lock:
            return self._advance(self._wall_ms(), remote_physical=0, remote_logical=-1)

    def update(self, remote: HLCTimestamp) -> HLCTimestamp:
        """Merge a stamp received from another device; returns a local stamp after both."""
        with self._lock:
            return self._advance(
                self._wall_ms(), remote_physical=remote.physical_ms, remote_logical=remote.logical
            )

    def peek(self) -> HLCTimestamp:
        """The latest stamp issued or merged, without advancing."""
        with self._lock:
            return HLCTimestamp(
                physical_ms=self._physical_ms, logical=self._logical, device_id=self.device_id
            )

    def _advance(self, wall: int, *, remote_physical: int, remote_logical: int) -> HLCTimestamp:
        physical = max(self._physical_ms, remote_physical, wall)
        if physical == self._physical_ms and physical == remote_physical:
            logical = max(self._logical, remote_logical) + 1
        elif physical == self._physical_ms:
            logical = self._logical + 1
        elif physical == remote_physical:
            logical = remote_logical + 1
        else:
            logical = 0
        if logical > MAX_LOGICAL:  # counter exhausted within one ms: borrow the next ms
            physical, logical = physical + 1, 0
        self._physical_ms, self._logical = physical, logical
        return HLCTimestamp(physical_ms=physical, logical=logical, device_id=self.device_id)


def check_not_ahead(
    stamp: HLCTimestamp,
    *,
    what: str,
    max_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
    now_ms: int | None = None,
    setting: str = "the skew allowed",
) -> HLCTimestamp:
    """``stamp`` unchanged, or ``ClockSkew`` if it is more than ``max_skew_ms`` ahead of this
    device's wall clock. Every stamp received from elsewhere (bundle import, peer sync) goes
    through here before it is merged.

    The hint names ``setting`` (what raises ``max_skew_ms`` where the stamp arrived) and when
    the stamp will be accepted as things are. Fixing the writer's clock does not help: the
    stamp is stored, and that device's later stamps follow it (an HLC never goes back)."""
    now = wall_clock_ms() if now_ms is None else now_ms
    ahead_ms = stamp.physical_ms - now
    if ahead_ms > max_skew_ms:
        raise ClockSkew(
            f"{what} carries an HLC stamp {_duration(ahead_ms)} ahead of this device's clock "
            f"(the limit is {_duration(max_skew_ms)}; stamp {stamp.to_str()})",
            hint=f"as things are, it is accepted in about {_duration(ahead_ms - max_skew_ms)}, "
            "when this device's clock reaches it; if this device's clock is behind, fix it, "
            f"or raise {setting} to accept it now (fixing the writer's clock does not help: "
            "its stamps are stored)",
        )
    return stamp


def _duration(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
