from __future__ import annotations

import asyncio
import time

import pytest

from runner.clock import MANUAL_CLOCK_START, ManualClock, ScaledClock, SystemClock


async def test_system_clock_reads_wall_time_and_sleeps_for_real() -> None:
    """SystemClock reports epoch seconds and its sleep takes real time."""
    clock = SystemClock()

    before = time.monotonic()
    await clock.sleep(0.02)
    elapsed = time.monotonic() - before

    assert abs(clock.now() - time.time()) < 0.5
    assert elapsed >= 0.019


async def test_scaled_clock_compresses_sleep_and_speeds_up_now() -> None:
    """ScaledClock sleeps scale times shorter and moves scale times faster."""
    clock = ScaledClock(1000.0, start=1_000_000.0)

    started_real = time.monotonic()
    started = clock.now()
    await clock.sleep(50.0)
    real = time.monotonic() - started_real
    moved = clock.now() - started

    assert 0.045 <= real < 0.5
    assert started == pytest.approx(1_000_000.0, abs=5.0)
    assert moved == pytest.approx(real * 1000.0, rel=0.05)
    assert moved >= 49.0


def test_scaled_clock_rejects_a_scale_that_is_not_positive() -> None:
    """A zero or negative scale is refused at construction."""
    with pytest.raises(ValueError, match="time_scale"):
        ScaledClock(0.0)


async def test_manual_clock_sleepers_wait_for_advance() -> None:
    """A ManualClock sleep returns only once advance() reaches its deadline."""
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(10.0))

    await clock.advance(9.0)
    assert not sleeper.done()
    await clock.advance(1.0)

    assert sleeper.done()
    assert clock.now() == MANUAL_CLOCK_START + 10.0


async def test_manual_clock_wakes_sleepers_in_order_at_their_own_deadline() -> None:
    """One large advance wakes each sleeper with now() at its own deadline."""
    clock = ManualClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))
        if name == "first":
            # A sleep started by a woken sleeper is honoured within the same advance.
            await clock.sleep(1.0)
            woke.append(("first-again", clock.now()))

    tasks = [
        asyncio.create_task(sleeper("late", 7.0)),
        asyncio.create_task(sleeper("first", 2.0)),
        asyncio.create_task(sleeper("middle", 5.0)),
    ]
    await clock.advance(100.0)

    assert woke == [
        ("first", 2.0),
        ("first-again", 3.0),
        ("middle", 5.0),
        ("late", 7.0),
    ]
    assert clock.now() == 100.0
    assert all(task.done() for task in tasks)


async def test_manual_clock_ignores_cancelled_sleepers() -> None:
    """A cancelled sleep no longer counts as waiting and does not wake anyone."""
    clock = ManualClock(start=0.0)
    cancelled = asyncio.create_task(clock.sleep(1.0))
    kept = asyncio.create_task(clock.sleep(5.0))
    await clock.settle()

    cancelled.cancel()
    await clock.settle()

    assert clock.sleepers == 1
    assert clock.next_deadline() == 5.0
    await clock.advance(5.0)
    assert kept.done()


async def test_manual_clock_zero_sleep_yields_without_time_moving() -> None:
    """sleep(0) returns at once and time stands still; negative advance is refused."""
    clock = ManualClock(start=0.0)

    await asyncio.wait_for(clock.sleep(0), timeout=1.0)

    assert clock.now() == 0.0
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(-1.0)
