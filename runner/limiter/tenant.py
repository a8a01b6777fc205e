"""One tenant's limiter: the run queue in front of its call windows and CPU budget."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from runner.clock import Clock
from runner.config import Rate
from runner.errors import ThrottledError
from runner.limiter.calls import CallLog
from runner.limiter.cpu import CpuLedger
from runner.limiter.retry_after import parse_window

log = structlog.get_logger(__name__)

_AGAIN_IN = re.compile(r"again in ((?:\d+\.)?\d+:\d{1,2}:\d{1,2}(?:\.\d+)?)")


class QuotaJournal(Protocol):
    """Where a limiter writes down what it spent, so a restart remembers it.

    Times are epoch seconds. The service counts a tenant's calls and CPU over
    sliding windows whatever happens to our process; a limiter that starts
    from nothing after a restart would send a burst the service refuses.
    """

    def called(self, tenant: str, at: float) -> None: ...

    def charged(self, tenant: str, at: float, cpu_seconds: float) -> None: ...

    def paused(self, tenant: str, until: float) -> None: ...


@dataclass(frozen=True)
class QuotaUsage:
    """What a journal gives back: calls, CPU charges and a pause, in epoch time."""

    calls: Sequence[float] = ()
    charges: Sequence[tuple[float, float]] = ()
    paused_until: float | None = None


@dataclass(eq=False)
class _Waiter:
    hunt: str
    priority: int
    expected_cpu: float
    enqueued_at: float
    order: int
    rank: float
    future: asyncio.Future[Permit]
    blocked_by: set[str] = field(default_factory=set)


class Permit:
    """The right to run one hunt now; made by ``TenantLimiter.acquire``.

    Await ``permit.call()`` right before every HTTP attempt (the first uses
    the call granted with the permit; each retry waits for a call token of its
    own), and ``permit.charge(cpu_seconds)`` with what the query cost. Until
    the first charge, the expected cost stays reserved; a permit released
    without a charge is billed its expected cost, unless it made no call.
    """

    def __init__(
        self, limiter: TenantLimiter, hunt: str, expected_cpu: float, waited: float
    ) -> None:
        self._limiter = limiter
        self.hunt = hunt
        self.expected_cpu = expected_cpu
        self.waited = waited
        self.calls = 0
        self.charged: float | None = None
        self.released = False
        self._granted_call: float | None = None

    async def call(self) -> None:
        """Take a call token for the next HTTP attempt, waiting if none is free."""
        if self.released:
            raise RuntimeError("permit already released")
        if self._granted_call is not None:
            recorded = self._granted_call
            self._granted_call = None
        else:
            recorded = await self._limiter._wait_for_call()
        # Written down before it is sent, so a crash cannot forget it; the
        # write may wait for a commit, so the call is stamped only after it.
        await self._limiter._journal_call()
        self._limiter._calls.restamp(recorded, self._limiter._now())
        self.calls += 1

    def charge(self, cpu_seconds: float) -> None:
        """Record what the query cost; the first charge replaces the reservation."""
        self._limiter._charge(self, max(cpu_seconds, 0.0))


class TenantLimiter:
    """Call windows, CPU budget, 429 pauses and the run queue of one tenant.

    A hunt waits in the queue until every call window has room, its expected
    CPU fits what every CPU window has left beside the reservations of running
    queries, fewer than ``max_concurrent`` run, and no 429 pause is on. The
    queue is ordered by priority plus ``aging_per_second`` for each second
    waited, first come first served among equals. A hunt whose CPU does not
    fit lets cheaper ones pass until it has waited ``bypass_limit`` seconds
    (default ``cpu_block_boundary``); then it holds the queue until it fits.
    """

    def __init__(
        self,
        tenant: str,
        *,
        calls: Sequence[Rate],
        cpu: Sequence[Rate],
        max_concurrent: int,
        clock: Clock,
        cpu_block_boundary: float = 900.0,
        skew_margin: float = 0.005,
        skew_floor: float = 0.0,
        aging_per_second: float = 1 / 60,
        bypass_limit: float | None = None,
        journal: QuotaJournal | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.tenant = tenant
        self._clock = clock
        self._journal = journal
        self._calls = CallLog(calls, skew_margin=skew_margin, skew_floor=skew_floor)
        self._cpu = CpuLedger(cpu)
        self._max_concurrent = max_concurrent
        self._cpu_block_boundary = cpu_block_boundary
        self._aging = aging_per_second
        self._bypass_limit = (
            cpu_block_boundary if bypass_limit is None else bypass_limit
        )

        self._running: set[Permit] = set()
        # Waiters by (-rank, order), and the same by (expected CPU, order);
        # granted and cancelled ones stay until they surface or a compaction.
        self._queue: list[tuple[float, int, _Waiter]] = []
        self._by_cost: list[tuple[float, int, _Waiter]] = []
        self._queued = 0
        self._call_waiters: deque[asyncio.Future[float]] = deque()
        self._paused_until = 0.0
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

        self.waits = 0
        self.wait_total = 0.0
        self.throttled = 0

    # -- the queue ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def acquire(
        self, *, hunt: str, priority: int = 0, expected_cpu: float = 0.0
    ) -> AsyncIterator[Permit]:
        """Wait for a slot to run *hunt*, then hold it for the ``async with`` body."""
        now = self._now()
        waiter = _Waiter(
            hunt=hunt,
            priority=priority,
            expected_cpu=max(expected_cpu, 0.0),
            enqueued_at=now,
            order=next(self._order),
            # Aging adds the same bonus per second to everyone waiting, so
            # the order among waiters is fixed when they join.
            rank=priority - self._aging * now,
            future=asyncio.get_running_loop().create_future(),
        )
        if len(self._queue) > 2 * self._queued + 64:
            self._compact()
        heapq.heappush(self._queue, (-waiter.rank, waiter.order, waiter))
        heapq.heappush(self._by_cost, (waiter.expected_cpu, waiter.order, waiter))
        self._queued += 1
        self._poke()
        try:
            permit = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(waiter.future.result())
            else:
                self._queued -= 1
                self._poke()
            raise
        try:
            yield permit
        finally:
            self._release(permit)

    def _compact(self) -> None:
        """Drop granted and cancelled waiters from both heaps."""
        for heap in (self._queue, self._by_cost):
            heap[:] = [entry for entry in heap if not entry[2].future.done()]
            heapq.heapify(heap)

    async def _wait_for_call(self) -> float:
        """Wait for a call token; return when it was recorded (for a restamp)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._call_waiters.append(future)
        self._poke()
        try:
            granted_at = await future
        except asyncio.CancelledError:
            # A token granted but never used stays recorded: the safe side.
            if future in self._call_waiters:
                self._call_waiters.remove(future)
            raise

        return granted_at

    def _poke(self) -> None:
        """Grant what can go now and have the timer watch for what time frees."""
        self._dispatch()
        self._changed.set()
        if (self._queued or self._call_waiters) and (
            self._timer is None or self._timer.done()
        ):
            self._timer = asyncio.get_running_loop().create_task(
                self._keep_time(), name=f"limiter-{self.tenant}"
            )

    async def _keep_time(self) -> None:
        while self._queued or self._call_waiters:
            self._changed.clear()
            wake_at = self._dispatch()
            if not (self._queued or self._call_waiters):
                return
            waits: set[asyncio.Future[Any]] = {
                asyncio.ensure_future(self._changed.wait())
            }
            if wake_at is not None:
                delay = wake_at - self._now()
                waits.add(asyncio.ensure_future(self._clock.sleep(delay)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pending in waits:
                    pending.cancel()

    def _dispatch(self) -> float | None:
        """Grant every waiter that fits now; return when time alone could grant more.

        Every time returned lies after now, so the timer never spins.
        """
        now = self._now()
        self._calls.forget(now)
        self._cpu.forget(now)
        wake: list[float] = []

        # Retries of running hunts hold a slot already: they go first.
        while self._call_waiters:
            opens_at = self._call_opens_at(now)
            if opens_at is not None:
                wake.append(opens_at)
                break
            future = self._call_waiters.popleft()
            if not future.done():
                self._calls.record(now)
                future.set_result(now)

        passed: list[tuple[float, int, _Waiter]] = []
        opens_at = self._call_opens_at(now)
        reserved = self._reserved()
        # The cheapest cost found not to fit now. Whether a cost fits only
        # gets harder as it grows (and as grants add reservations), so no
        # waiter costing as much needs checking: with a thousand hunts
        # waiting for CPU, each pass stays short.
        blocked: float | None = None
        while self._queue:
            waiter = self._queue[0][2]
            if waiter.future.done():
                heapq.heappop(self._queue)
                continue
            if opens_at is not None:
                wake.append(opens_at)
                waiter.blocked_by.add("paused" if self._paused_until > now else "calls")
                break
            if len(self._running) >= self._max_concurrent:
                waiter.blocked_by.add("concurrency")
                break
            if blocked is None or waiter.expected_cpu < blocked:
                fits_at = self._cpu.fits_at(waiter.expected_cpu, reserved, now)
                if fits_at is not None and fits_at <= now:
                    heapq.heappop(self._queue)
                    self._grant(waiter, now)
                    opens_at = self._call_opens_at(now)
                    reserved = self._reserved()
                    continue
                if fits_at is not None:
                    wake.append(fits_at)
                first_blocked = blocked is None
                blocked = waiter.expected_cpu
                if first_blocked and not self._any_fits(blocked, reserved, now, wake):
                    waiter.blocked_by.add("cpu")
                    break
            waiter.blocked_by.add("cpu")
            if now - waiter.enqueued_at >= self._bypass_limit:
                break
            # Cheaper hunts behind may pass while this one is young.
            passed.append(heapq.heappop(self._queue))
        for entry in passed:
            heapq.heappush(self._queue, entry)

        return min(wake) if wake else None

    def _any_fits(
        self, blocked: float, reserved: float, now: float, wake: list[float]
    ) -> bool:
        """Whether the cheapest waiter, if cheaper than *blocked*, fits now.

        If it does not, no waiter does: the caller stops looking, and *wake*
        gets when the cheapest will fit.
        """
        while self._by_cost and self._by_cost[0][2].future.done():
            heapq.heappop(self._by_cost)
        if not self._by_cost or self._by_cost[0][0] >= blocked:
            return False
        fits_at = self._cpu.fits_at(self._by_cost[0][0], reserved, now)
        if fits_at is not None and fits_at <= now:
            return True
        if fits_at is not None:
            wake.append(fits_at)

        return False

    def _call_opens_at(self, now: float) -> float | None:
        opens_at = self._calls.opens_at(now)
        if self._paused_until > now:
            return max(self._paused_until, opens_at or 0.0)

        return opens_at

    def _grant(self, waiter: _Waiter, now: float) -> None:
        self._queued -= 1
        waited = now - waiter.enqueued_at
        permit = Permit(self, waiter.hunt, waiter.expected_cpu, waited)
        self._calls.record(now)
        permit._granted_call = now
        self._running.add(permit)
        if waited > 0:
            self.waits += 1
            self.wait_total += waited
        # The reasons seen at the head of the queue; "queue" alone means the
        # hunt waited behind others that ranked higher.
        reasons = ",".join(sorted(waiter.blocked_by)) or "queue"
        log.debug(
            "limiter.granted",
            tenant=self.tenant,
            hunt=waiter.hunt,
            priority=waiter.priority,
            expected_cpu_s=round(waiter.expected_cpu, 3),
            waited_s=round(waited, 3),
            waited_for=reasons if waited > 0 else None,
            running=len(self._running),
            queue_depth=self._queued,
        )
        waiter.future.set_result(permit)

    def _release(self, permit: Permit) -> None:
        if permit.released:
            return
        permit.released = True
        self._running.discard(permit)
        if permit.calls == 0 and permit.charged is None:
            # Nothing was sent (the token fetch failed, the task was
            # cancelled): the service counted no call and spent no CPU.
            if permit._granted_call is not None:
                self._calls.unrecord(permit._granted_call)
                permit._granted_call = None
            permit.charged = 0.0
        elif permit.charged is None:
            # No answer told us the cost; assume the query ran as expected.
            self._spend(permit.expected_cpu)
            permit.charged = permit.expected_cpu
        self._poke()

    def _charge(self, permit: Permit, cpu_seconds: float) -> None:
        self._spend(cpu_seconds)
        permit.charged = (permit.charged or 0.0) + cpu_seconds
        self._poke()

    def _spend(self, cpu_seconds: float) -> None:
        now = self._now()
        self._cpu.charge(now, cpu_seconds)
        if self._journal is not None:
            self._journal.charged(self.tenant, self._wall(now), cpu_seconds)

    async def _journal_call(self) -> None:
        # Off the event loop: the state file's lock may be held by a commit
        # in progress, and other tenants' calls must not wait for it.
        if self._journal is not None:
            await asyncio.to_thread(
                self._journal.called, self.tenant, self._clock.now()
            )

    # -- restarts ------------------------------------------------------------

    @property
    def memory(self) -> float:
        """How far back (seconds) spending still matters: the longest window."""
        return max(self._calls.longest, self._cpu.longest)

    def restore(self, usage: QuotaUsage) -> None:
        """Take back what an earlier process spent, before anything runs here.

        Calls and charges older than their windows are dropped on the way.
        """
        now, wall = self._now(), self._clock.now()
        for at in sorted(usage.calls):
            self._calls.record(at - wall + now)
        for at, cpu_seconds in sorted(usage.charges):
            self._cpu.charge(at - wall + now, cpu_seconds)
        if usage.paused_until is not None and usage.paused_until > wall:
            self._paused_until = max(
                self._paused_until, usage.paused_until - wall + now
            )
        self._calls.forget(now)
        self._cpu.forget(now)

    def _reserved(self) -> float:
        return sum((p.expected_cpu for p in self._running if p.charged is None), 0.0)

    # -- 429s --------------------------------------------------------------

    def on_throttled(self, error: ThrottledError) -> None:
        """Adjust to a 429: close the call window it names, or pause the tenant.

        Call this once for every 429 received; each call is counted and logged.
        """
        now = self._now()
        self.throttled += 1
        retry_after = error.retry_after or None
        seconds = parse_window(error.window) if error.window else None
        if seconds is not None:
            kind = "calls"
            until = self._calls.block(seconds, retry_after, now)
            if until is None:
                kind = "calls_unconfigured"
                until = now + min(retry_after or seconds, seconds)
                self._paused_until = max(self._paused_until, until)
        else:
            # The CPU quota's body is undocumented; the portal's wording is
            # the one hint, and any other 429 is handled the same way.
            kind = "cpu" if "resources" in error.message.lower() else "unknown"
            boundary = self._cpu_block_boundary
            if retry_after is None:
                # The portal's wording names the wait ("You can run queries
                # again in 05:00:00."): never resume before it, nor before
                # the next cycle, whose boundaries are on the wall clock.
                wall = self._clock.now()
                until = now + (math.floor(wall / boundary) + 1) * boundary - wall
                said = _AGAIN_IN.search(error.message)
                waited = parse_window(said.group(1)) if said else None
                if waited is not None:
                    until = max(until, now + waited)
            else:
                until = now + retry_after
            # Once the longest CPU window has passed, every window is empty:
            # a later end (1e9, a bad date) would stop the tenant for nothing.
            until = min(until, now + self._cpu.longest + boundary)
            self._paused_until = max(self._paused_until, until)

        if self._journal is not None and self._paused_until > now:
            self._journal.paused(self.tenant, self._wall(self._paused_until))
        log.warning(
            "limiter.throttled",
            tenant=self.tenant,
            hunt=error.hunt,
            kind=kind,
            window=error.window,
            limit=error.limit,
            retry_after=error.retry_after,
            pause_s=round(until - now, 3),
        )
        if self._queued or self._call_waiters:
            self._poke()

    # -- visibility ----------------------------------------------------------

    def _now(self) -> float:
        # The limiter's time line: windows, pauses and sleeps are measured on
        # the monotonic clock, so a step of the wall clock neither stalls a
        # tenant nor lets it forget the calls it made.
        monotonic = getattr(self._clock, "monotonic", None)
        return monotonic() if monotonic is not None else self._clock.now()

    def _wall(self, at: float) -> float:
        """The epoch time of *at* on the limiter's time line, for people."""
        return at - self._now() + self._clock.now()

    @property
    def paused_until(self) -> float | None:
        """When the tenant's 429 pause ends (epoch), or ``None`` when not paused."""
        if self._paused_until <= self._now():
            return None
        return self._wall(self._paused_until)

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return len(self._running)

    def snapshot(self) -> dict[str, Any]:
        """Return the limiter's state as plain data for logs and ``status``."""
        now = self._now()

        calls = self._calls.levels(now)
        for level in calls:
            if level["blocked_until"] is not None:
                level["blocked_until"] = self._wall(level["blocked_until"])

        return {
            "tenant": self.tenant,
            "calls": calls,
            "cpu": self._cpu.levels(self._reserved(), now),
            "queue_depth": self.queue_depth,
            "running": self.running,
            "paused_until": self.paused_until,
            "waits": self.waits,
            "wait_total_s": round(self.wait_total, 3),
            "throttled": self.throttled,
        }

    async def aclose(self) -> None:
        """Stop the timer; hunts still queued stay queued."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
