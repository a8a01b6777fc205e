"""Clocks: the one source of time for the scheduler and the limiter.

Code that waits or reads the time takes a ``Clock`` so that tests and
benchmarks can replace real time: ``ScaledClock`` compresses an hour into
seconds while staying real (sockets, servers and the event loop all run), and
``ManualClock`` stands still until a test advances it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Epoch time and sleeping, on whatever time line the caller lives in.

    The clocks here also have ``monotonic()``: seconds at the rate of
    ``now()`` on a line that steps of the wall clock (NTP, a resumed VM, an
    operator) never move, which ``sleep`` follows too. The limiter measures
    its windows with it when a clock has it, so they keep their length.
    """

    def now(self) -> float:
        """Return the current time in epoch seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once *seconds* of this clock's time have passed."""
        ...


class SystemClock:
    """Real wall-clock time and real sleeps."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ScaledClock:
    """Real time running *time_scale* times faster, from a start epoch.

    ``now()`` advances ``time_scale`` clock seconds per real second and
    ``sleep(s)`` takes ``s / time_scale`` real seconds, so a component that
    waits for a one-hour window waits 3.6 real seconds at scale 1000.
    """

    def __init__(self, time_scale: float, *, start: float | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.time_scale = time_scale
        self.start = time.time() if start is None else start
        self._origin = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._origin) * self.time_scale

    def monotonic(self) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.time_scale)


# 2026-01-01T00:00:00Z: a quarter-hour boundary, so tests can reason about the
# limiter's 15-minute CPU cycles from round numbers.
MANUAL_CLOCK_START = 1_767_225_600.0


class ManualClock:
    """A clock that moves only when a test calls ``advance()``.

    Sleepers are woken in deadline order, each with ``now()`` set to its own
    deadline, and the event loop is given a chance to run what they started
    before the next one wakes; so a test sees the same order of events at any
    step size.
    """

    def __init__(self, start: float = MANUAL_CLOCK_START, *, settle_rounds: int = 50):
        self._now = start
        self._settle_rounds = settle_rounds
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return

        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def next_deadline(self) -> float | None:
        """Return the earliest time a sleeper waits for, or ``None``."""
        self._drop_abandoned()
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by *seconds*, waking every sleeper on the way."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, got {seconds}")
        target = self._now + seconds
        await self.settle()
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Let the event loop run everything that is ready at the current time."""
        for _ in range(self._settle_rounds):
            await asyncio.sleep(0)

    def _drop_abandoned(self) -> None:
        # A sleep cancelled by its caller (a lost race, a shutdown) leaves its
        # future behind; it must not pull time to its deadline.
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
