"""Hybrid logical clock: monotonic under clock jumps, merges remote stamps, ties by device."""

from __future__ import annotations

import threading

import pytest
from meshdex.index.errors import InvalidArgument
from meshdex.node.hlc import HLCTimestamp, HybridLogicalClock


class SettableWall:
    """A wall clock the test moves by hand (the mechanics under test are the clock's jumps)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def stamp(physical: int, logical: int, device: str = "a") -> HLCTimestamp:
    return HLCTimestamp(physical_ms=physical, logical=logical, device_id=device)


def test_stamps_follow_the_wall_clock_when_it_moves_forward() -> None:
    wall = SettableWall(1000)
    clock = HybridLogicalClock("a", wall_ms=wall)
    assert clock.now() == stamp(1000, 0)
    assert clock.now() == stamp(1000, 1)
    wall.ms = 2000
    assert clock.now() == stamp(2000, 0)


def test_stamps_keep_growing_when_the_wall_clock_goes_backwards() -> None:
    wall = SettableWall(5000)
    clock = HybridLogicalClock("a", wall_ms=wall)
    first = clock.now()
    wall.ms = 10  # someone set the clock back
    later = [clock.now() for _ in range(5)]
    assert later == sorted(later)
    assert all(s > first for s in later)
    assert later[-1] == stamp(5000, 5)


def test_the_real_wall_clock_gives_strictly_increasing_stamps_across_threads() -> None:
    clock = HybridLogicalClock("dev")
    stamps: list[HLCTimestamp] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [clock.now() for _ in range(2000)]
        assert mine == sorted(mine)
        with lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == len(stamps) == 8000


@pytest.mark.parametrize(
    ("local", "remote", "wall", "expected"),
    [
        # remote ahead of everything: adopt its physical time, bump its counter
        (stamp(100, 3), stamp(500, 7, "b"), 200, stamp(500, 8)),
        # local ahead: keep local physical, bump local counter
        (stamp(900, 2), stamp(500, 7, "b"), 200, stamp(900, 3)),
        # same physical time: past the larger counter
        (stamp(500, 2), stamp(500, 7, "b"), 200, stamp(500, 8)),
        # wall clock ahead of both: counter resets
        (stamp(100, 3), stamp(200, 9, "b"), 1000, stamp(1000, 0)),
    ],
)
def test_update_merges_a_remote_stamp(local, remote, wall, expected) -> None:
    clock = HybridLogicalClock("a", last=local, wall_ms=SettableWall(wall))
    merged = clock.update(remote)
    assert merged == expected
    assert merged > remote and merged > local
    assert clock.now() > merged


def test_ties_are_broken_by_device_id() -> None:
    assert stamp(7, 1, "aaa") < stamp(7, 1, "bbb")
    assert stamp(7, 1, "zzz") < stamp(7, 2, "aaa")
    assert stamp(7, 9, "zzz") < stamp(8, 0, "aaa")
    assert stamp(7, 1, "aaa").pack() < stamp(7, 1, "bbb").pack()


def test_seeding_from_a_persisted_stamp_keeps_order_across_restarts() -> None:
    before = HybridLogicalClock("a", wall_ms=SettableWall(9000)).now()
    after_restart = HybridLogicalClock("a", last=before, wall_ms=SettableWall(3000)).now()
    assert after_restart > before


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = HybridLogicalClock("a", last=stamp(100, 2**32 - 1), wall_ms=SettableWall(0))
    assert clock.now() == stamp(101, 0)


@pytest.mark.parametrize("value", [stamp(0, 0), stamp(2**63, 17, "dev-1-x"), stamp(1, 2, "é")])
def test_pack_and_text_round_trip(value: HLCTimestamp) -> None:
    assert HLCTimestamp.unpack(value.pack()) == value
    assert HLCTimestamp.from_str(value.to_str()) == value


@pytest.mark.parametrize("text", ["", "12", "zz-1-a", "1-zz-a"])
def test_malformed_text_stamp_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed HLC stamp"):
        HLCTimestamp.from_str(text)


def test_out_of_range_parts_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="logical"):
        stamp(1, 2**32)
    with pytest.raises(InvalidArgument, match="device id"):
        HybridLogicalClock("")
