"""A paired device's name is what `peer rm|share|unshare` and `sync --peer` take, so two
paired devices may not share one: `meshdex join --name laptop` from a second device was
accepted without a word on a desktop that already had a "laptop", and from then on every
command given "laptop" there was refused as ambiguous. Now `peer add --name` (a name chosen
here) refuses a taken name, and a name a device gives itself when pairing (the joiner's, on
the inviter; the inviter's, on the joiner: host names repeat) is made unique with that
device's short id, which the join line and the serving node's log show. Real `meshdex serve`
processes (real mutual TLS) and real CLI subprocesses."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from meshdex.sync.device_id import DeviceId
from sync_support import SyncServeProcess


class Laptop(SyncServeProcess):
    """A device that never serves."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "MESHDEX_SYNC_LISTEN": "", "MESHDEX_PAIR_LISTEN": ""}


@pytest.fixture
def desktops(tmp_path: Path):
    started = [SyncServeProcess(tmp_path / name).start() for name in ("desktop", "desktop-2")]
    yield started
    for desktop in started:
        desktop.stop(signal.SIGKILL)


def _names(device: SyncServeProcess) -> list[str]:
    return sorted(peer["name"] for peer in json.loads(device.meshdex("peers", "--json").stdout))


def test_joining_under_a_name_the_inviter_already_has_records_it_under_its_short_id(
        desktops, tmp_path: Path) -> None:
    desktop = desktops[0]
    Laptop(tmp_path / "old").meshdex("join", desktop.meshdex("invite").stdout.strip(),
                                     "--name", "laptop")
    new = Laptop(tmp_path / "new")
    new.meshdex("join", desktop.meshdex("invite").stdout.strip(), "--name", "laptop")
    unique = f"laptop-{DeviceId.parse(new.meshdex('id').stdout.strip()).short}"
    assert _names(desktop) == ["laptop", unique]
    assert any(f"the one joining is {unique!r} here" in line for line in desktop.lines)
    removed = desktop.meshdex("peer", "rm", unique)  # each name names one device
    assert removed.stdout.startswith(f"removed peer {unique} (")
    assert _names(desktop) == ["laptop"]


def test_peer_add_refuses_a_taken_name_and_an_inviters_taken_name_gets_its_short_id(
        desktops, tmp_path: Path) -> None:
    desktop, other = desktops
    laptop = Laptop(tmp_path / "laptop")
    laptop.meshdex("join", desktop.meshdex("invite").stdout.strip())
    [taken] = _names(laptop)  # the desktop's own name (its host name), as it gave it
    other_id = other.meshdex("id").stdout.strip()
    added = laptop.meshdex("peer", "add", other_id, f"127.0.0.1:{other.sync_port}",
                           "--name", taken, check=False)
    assert added.returncode == 4, added.stderr
    assert f"another paired device is already called {taken!r}" in added.stderr
    assert "another name with --name" in added.stderr and _names(laptop) == [taken]

    joined = laptop.meshdex("join", other.meshdex("invite").stdout.strip())
    unique = f"{taken}-{DeviceId.parse(other_id).short}"
    assert joined.stdout.startswith(f"paired with {unique} ({other_id})"), joined.stdout
    assert _names(laptop) == sorted([taken, unique])
    shared = laptop.meshdex("peer", "share", unique, "papers")  # each name names one device
    assert f"with {unique} ({other_id})" in shared.stdout
