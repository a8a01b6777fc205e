from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from runner.clock import ManualClock, ScaledClock
from runner.errors import ThrottledError
from runner.limiter import (
    SKEW_FLOOR,
    Limiter,
    Limits,
    Permit,
    Rate,
    TenantLimiter,
    parse_retry_after,
    parse_window,
    update_average,
)
from runner.state import State

CALL_QUOTA = "API calls quota exceeded! maximum allowed {limit} per {window}"
CPU_QUOTA = (
    "You have exceeded processing resources allocated to this tenant. "
    "You can run queries again in 00:12:00."
)


def make_limiter(
    clock: ManualClock,
    *,
    calls: Sequence[Rate] = (Rate(45, 60.0), Rate(1500, 3600.0)),
    cpu: Sequence[Rate] = (Rate(600, 3600.0),),
    max_concurrent: int = 4,
    skew_margin: float = 0.0,
    **options: float,
) -> TenantLimiter:
    return TenantLimiter(
        "contoso",
        calls=calls,
        cpu=cpu,
        max_concurrent=max_concurrent,
        clock=clock,
        skew_margin=skew_margin,
        **options,
    )


def throttled(
    message: str,
    *,
    window: str | None = None,
    limit: int | None = None,
    retry_after: float | None = None,
) -> ThrottledError:
    return ThrottledError(
        "contoso",
        429,
        "429",
        message,
        retry_after=retry_after,
        window=window,
        limit=limit,
        hunt="rare-logons",
    )


class Runs:
    """Hunts started as tasks, recording when each was granted and its calls."""

    def __init__(self, limiter: TenantLimiter, clock: ManualClock) -> None:
        self.limiter = limiter
        self.clock = clock
        self.granted: dict[str, float] = {}
        self.order: list[str] = []
        self.calls: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(
        self,
        hunt: str,
        *,
        priority: int = 0,
        expected_cpu: float = 0.0,
        cost: float | None = None,
        hold: float = 1.0,
        attempts: int = 1,
    ) -> asyncio.Task[None]:
        async def run() -> None:
            async with self.limiter.acquire(
                hunt=hunt, priority=priority, expected_cpu=expected_cpu
            ) as permit:
                self.granted[hunt] = self.clock.now()
                self.order.append(hunt)
                for _ in range(attempts):
                    await permit.call()
                    self.calls.append(self.clock.now())
                await self.clock.sleep(hold)
                permit.charge(expected_cpu if cost is None else cost)

        task = asyncio.create_task(run(), name=hunt)
        self.tasks.append(task)

        return task


# -- helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "0.249"}, 0.249),
        ({"retry-after": "2.128"}, 2.128),
        ({"RETRY-AFTER": " 30 "}, 30.0),
        ({"Content-Type": "application/json"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "nan"}, None),
    ],
)
def test_parse_retry_after_reads_seconds_in_any_case(
    headers: dict[str, str], expected: float | None
) -> None:
    """Retry-After is read as seconds in any header case; absent or junk is None."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_reads_an_http_date_against_now() -> None:
    """An HTTP-date Retry-After becomes the seconds from *now* until that date."""
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 3, 1, 12, 1, 30, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)

    assert parse_retry_after({"retry-after": later}, now=now) == 90.0
    assert parse_retry_after({"Retry-After": earlier}, now=now) == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:01:00", 60.0),
        ("01:00:00", 3600.0),
        ("1.00:00:00", 86400.0),
        ("00:00:00.5", 0.5),
        ("a minute", None),
    ],
)
def test_parse_window_reads_dotnet_timespans(text: str, seconds: float | None) -> None:
    """The window a 429 body names is read as a .NET TimeSpan."""
    assert parse_window(text) == seconds


def test_update_average_starts_with_the_first_sample_then_smooths() -> None:
    """The moving average starts at the first sample and moves alpha toward each."""
    assert update_average(None, 10.0) == 10.0
    assert update_average(10.0, 20.0) == pytest.approx(13.0)
    assert update_average(10.0, 20.0, alpha=1.0) == 20.0


# -- call windows ----------------------------------------------------------------


async def test_calls_beyond_the_minute_window_wait_until_the_oldest_leaves() -> None:
    """The 46th call in a minute waits exactly until the first call leaves."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, max_concurrent=100)
    runs = Runs(limiter, clock)
    for number in range(46):
        runs.start(f"hunt-{number:02d}", hold=0.0)
        await clock.advance(0.5)

    assert len(runs.granted) == 45
    assert limiter.snapshot()["queue_depth"] == 1
    await clock.advance(60.0 - clock.now())

    assert runs.granted["hunt-45"] == 60.0
    await asyncio.gather(*runs.tasks)


async def test_skew_margin_widens_each_window() -> None:
    """With a 1% margin a 60 s window holds its calls for 60.6 s."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(2, 60.0),), skew_margin=0.01)
    runs = Runs(limiter, clock)
    for hunt in ("a", "b", "c"):
        runs.start(hunt, hold=0.0)

    await clock.advance(60.5)
    assert "c" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["c"] == pytest.approx(60.6)
    await asyncio.gather(*runs.tasks)


async def test_retries_inside_a_permit_take_call_tokens_of_their_own() -> None:
    """A second attempt under one permit waits for a call token like a new hunt."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(2, 10.0),))
    runs = Runs(limiter, clock)

    runs.start("retrying", attempts=3, hold=0.0)
    await clock.advance(9.0)
    assert runs.calls == [0.0, 0.0]
    await clock.advance(5.0)

    assert runs.calls == [0.0, 0.0, 10.0]
    await asyncio.gather(*runs.tasks)


@pytest.mark.parametrize("seed", range(6))
async def test_no_window_ever_holds_more_than_its_count(seed: int) -> None:
    """Under random load, no sliding window ever saw more calls than it allows."""
    rng = random.Random(seed)
    clock = ManualClock(start=0.0)
    rates = (Rate(5, 10.0), Rate(12, 60.0))
    limiter = make_limiter(
        clock,
        calls=rates,
        cpu=(Rate(100, 120.0),),
        max_concurrent=rng.randint(1, 6),
        # A margin far below any gap in the load keeps float rounding at the
        # window's edge out of the comparison below.
        skew_margin=0.0001,
    )
    runs = Runs(limiter, clock)
    attempts = 0
    for number in range(60):
        attempts += (attempt := rng.randint(1, 3))
        runs.start(
            f"hunt-{number}",
            priority=rng.randint(0, 3),
            expected_cpu=rng.uniform(0.0, 20.0),
            cost=rng.uniform(0.0, 25.0),
            hold=rng.uniform(0.0, 8.0),
            attempts=attempt,
        )
        await clock.advance(rng.expovariate(1.0))
    await clock.advance(2_000.0)

    await asyncio.gather(*runs.tasks)
    assert len(runs.calls) == attempts
    for rate in rates:
        for sent in runs.calls:
            in_window = [t for t in runs.calls if sent - rate.per_seconds < t <= sent]
            assert len(in_window) <= rate.count, (rate, sent)
    busiest = max(sum(1 for t in runs.calls if s - 10.0 < t <= s) for s in runs.calls)
    assert busiest == 5


# -- 429s ----------------------------------------------------------------------


async def test_minute_window_429_holds_calls_until_the_oldest_leaves() -> None:
    """A 429 naming the minute window with our log full waits out the oldest call."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(3, 60.0), Rate(1500, 3600.0)))
    runs = Runs(limiter, clock)
    for hunt in ("a", "b", "c"):
        runs.start(hunt, hold=0.0)
        await clock.advance(10.0)

    with capture_logs() as logs:
        limiter.on_throttled(
            throttled(
                CALL_QUOTA.format(limit=3, window="00:01:00"),
                window="00:01:00",
                limit=3,
                retry_after=0.249,
            )
        )

    assert logs == [
        {
            "event": "limiter.throttled",
            "log_level": "warning",
            "tenant": "contoso",
            "hunt": "rare-logons",
            "kind": "calls",
            "window": "00:01:00",
            "limit": 3,
            "retry_after": 0.249,
            "pause_s": 30.0,
        }
    ]
    runs.start("d", hold=0.0)
    await clock.advance(29.0)
    assert "d" not in runs.granted
    await clock.advance(1.0)
    assert runs.granted["d"] == 60.0
    assert limiter.snapshot()["throttled"] == 1
    await asyncio.gather(*runs.tasks)


async def test_hour_window_429_with_room_in_our_log_closes_it_for_an_hour() -> None:
    """A 429 naming the hour window our log thinks has room closes it a full hour."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock)
    runs = Runs(limiter, clock)

    with capture_logs() as logs:
        limiter.on_throttled(
            throttled(
                CALL_QUOTA.format(limit=1500, window="01:00:00"),
                window="01:00:00",
                limit=1500,
            )
        )
    runs.start("a", hold=0.0)
    await clock.advance(3599.0)
    assert "a" not in runs.granted
    snapshot = limiter.snapshot()
    await clock.advance(1.0)

    assert runs.granted["a"] == 3600.0
    assert logs[0]["kind"] == "calls"
    assert logs[0]["pause_s"] == 3600.0
    assert snapshot["calls"][1]["blocked_until"] == 3600.0
    assert snapshot["calls"][0]["blocked_until"] is None
    assert snapshot["paused_until"] is None
    await asyncio.gather(*runs.tasks)


async def test_window_429_with_room_and_retry_after_waits_the_shorter() -> None:
    """When the server names a window we think has room, Retry-After wins if sooner."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock)
    runs = Runs(limiter, clock)

    limiter.on_throttled(
        throttled(
            CALL_QUOTA.format(limit=45, window="00:01:00"),
            window="00:01:00",
            limit=45,
            retry_after=2.128,
        )
    )
    runs.start("a", hold=0.0)
    await clock.advance(2.0)
    assert "a" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["a"] == pytest.approx(2.128)
    await asyncio.gather(*runs.tasks)


async def test_cpu_429_without_retry_after_pauses_until_the_quarter_hour() -> None:
    """A CPU 429 without Retry-After stops the tenant until the next 15-minute mark."""
    clock = ManualClock(start=1000.0)
    limiter = make_limiter(clock)
    runs = Runs(limiter, clock)

    with capture_logs() as logs:
        limiter.on_throttled(throttled(CPU_QUOTA))
    runs.start("a", hold=0.0)
    await clock.advance(799.0)
    assert "a" not in runs.granted
    assert limiter.snapshot()["paused_until"] == 1800.0
    await clock.advance(1.0)

    assert runs.granted["a"] == 1800.0
    assert logs == [
        {
            "event": "limiter.throttled",
            "log_level": "warning",
            "tenant": "contoso",
            "hunt": "rare-logons",
            "kind": "cpu",
            "window": None,
            "limit": None,
            "retry_after": None,
            "pause_s": 800.0,
        }
    ]
    await asyncio.gather(*runs.tasks)


async def test_unknown_429_with_retry_after_pauses_for_retry_after() -> None:
    """A 429 whose body names no window pauses the tenant for Retry-After."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock)
    runs = Runs(limiter, clock)

    with capture_logs() as logs:
        limiter.on_throttled(throttled("Too many requests", retry_after=12.5))
    runs.start("a", hold=0.0)
    await clock.advance(12.0)
    assert "a" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["a"] == 12.5
    assert (logs[0]["kind"], logs[0]["pause_s"]) == ("unknown", 12.5)
    await asyncio.gather(*runs.tasks)


async def test_429_for_a_window_we_do_not_know_pauses_for_that_window() -> None:
    """A 429 naming a window missing from the configuration pauses for its length."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(45, 60.0),))

    with capture_logs() as logs:
        limiter.on_throttled(
            throttled(
                CALL_QUOTA.format(limit=1500, window="01:00:00"),
                window="01:00:00",
                limit=1500,
            )
        )

    assert logs[0]["kind"] == "calls_unconfigured"
    assert limiter.snapshot()["paused_until"] == 3600.0


async def test_a_pause_also_holds_retries_of_running_hunts() -> None:
    """After a CPU 429 a running hunt's retry waits for the pause: no retry storm."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock)
    runs = Runs(limiter, clock)

    async def run_with_retry() -> None:
        async with limiter.acquire(hunt="a", priority=0, expected_cpu=1.0) as permit:
            await permit.call()
            runs.calls.append(clock.now())
            limiter.on_throttled(throttled(CPU_QUOTA, retry_after=30.0))
            await permit.call()
            runs.calls.append(clock.now())

    task = asyncio.create_task(run_with_retry())
    await clock.advance(29.0)
    assert runs.calls == [0.0]
    await clock.advance(1.0)

    assert runs.calls == [0.0, 30.0]
    await task


# -- CPU budget ----------------------------------------------------------------


async def test_expensive_hunt_waits_for_budget_while_a_cheaper_one_goes() -> None:
    """A hunt that does not fit the CPU left waits; a cheaper one goes meanwhile."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0),))
    runs = Runs(limiter, clock)
    runs.start("spent", expected_cpu=500.0, hold=10.0)
    await clock.advance(10.0)

    runs.start("expensive", expected_cpu=200.0, hold=10.0)
    await clock.advance(1.0)
    runs.start("cheap", expected_cpu=50.0, hold=10.0)
    await clock.advance(1.0)

    assert "expensive" not in runs.granted
    assert runs.granted["cheap"] == 11.0
    cpu = limiter.snapshot()["cpu"][0]
    assert (cpu["used_s"], cpu["reserved_s"], cpu["left_s"]) == (500.0, 50.0, 50.0)
    await clock.advance(3610.0 - clock.now() - 0.5)
    assert "expensive" not in runs.granted
    await clock.advance(0.5)

    # The 500 s charged at t=10 leaves the hour window at t=3610.
    assert runs.granted["expensive"] == 3610.0
    await clock.advance(20.0)
    await asyncio.gather(*runs.tasks)


async def test_cpu_reservation_is_replaced_by_the_charged_cost() -> None:
    """While running, the expected cost is reserved; charge() replaces it."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0),))

    async with limiter.acquire(hunt="a", priority=0, expected_cpu=100.0) as permit:
        await permit.call()
        reserved = limiter.snapshot()["cpu"][0]
        permit.charge(30.0)
        charged = limiter.snapshot()["cpu"][0]

    assert (reserved["used_s"], reserved["reserved_s"]) == (0.0, 100.0)
    assert (charged["used_s"], charged["reserved_s"]) == (30.0, 0.0)
    assert limiter.snapshot()["cpu"][0]["left_s"] == 570.0


async def test_uncharged_permit_counts_its_expected_cost() -> None:
    """A permit left without charge() is billed its expected cost."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0),))

    async with limiter.acquire(hunt="a", priority=0, expected_cpu=80.0) as permit:
        await permit.call()

    assert limiter.snapshot()["cpu"][0]["used_s"] == 80.0


async def test_expensive_hunt_stops_bypass_after_waiting_its_limit() -> None:
    """Once the expensive hunt has waited bypass_limit, cheaper ones no longer pass."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(100, 100.0),), bypass_limit=30.0)
    runs = Runs(limiter, clock)
    runs.start("spent", expected_cpu=60.0, hold=0.0)
    await clock.advance(1.0)
    runs.start("expensive", expected_cpu=90.0, hold=0.0)
    await clock.advance(1.0)

    runs.start("cheap-early", expected_cpu=10.0, hold=0.0)
    await clock.advance(40.0)
    runs.start("cheap-late", expected_cpu=10.0, hold=0.0)
    await clock.advance(1.0)

    assert runs.granted["cheap-early"] == 2.0
    assert "cheap-late" not in runs.granted
    await clock.advance(200.0)
    # "spent" leaves at 100, leaving exactly the 90 s the expensive one needs.
    assert runs.granted["expensive"] == 100.0
    assert runs.order.index("expensive") < runs.order.index("cheap-late")
    await asyncio.gather(*runs.tasks)


async def test_hunt_dearer_than_the_whole_budget_runs_when_the_window_is_empty() -> (
    None
):
    """A cost above a whole window's budget waits for an empty window, not forever."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(100, 100.0),))
    runs = Runs(limiter, clock)
    runs.start("small", expected_cpu=10.0, hold=0.0)
    await clock.advance(1.0)
    runs.start("huge", expected_cpu=500.0, hold=0.0)
    await clock.advance(200.0)

    assert runs.granted["huge"] == 100.0
    await asyncio.gather(*runs.tasks)


# -- order and concurrency -----------------------------------------------------


async def test_higher_priority_first_then_longest_waiting() -> None:
    """The queue serves higher priority first and, among equals, the earliest."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, max_concurrent=1, aging_per_second=0.0)
    runs = Runs(limiter, clock)
    runs.start("running", hold=10.0)
    await clock.advance(1.0)
    for hunt, priority in [("low-1", 1), ("high-1", 5), ("low-2", 1), ("high-2", 5)]:
        runs.start(hunt, priority=priority, hold=10.0)
        await clock.advance(1.0)

    await clock.advance(100.0)

    assert runs.order == ["running", "high-1", "high-2", "low-1", "low-2"]
    await asyncio.gather(*runs.tasks)


async def test_concurrency_limit_caps_hunts_running_at_once() -> None:
    """No more than max_concurrent hunts hold a permit at the same time."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, max_concurrent=2)
    runs = Runs(limiter, clock)
    for hunt in ("a", "b", "c"):
        runs.start(hunt, hold=5.0)

    await clock.advance(1.0)
    assert sorted(runs.granted) == ["a", "b"]
    assert (limiter.running, limiter.queue_depth) == (2, 1)
    await clock.advance(4.0)

    assert runs.granted["c"] == 5.0
    await clock.advance(10.0)
    await asyncio.gather(*runs.tasks)


async def test_low_priority_hunt_is_not_starved_by_a_steady_high_stream() -> None:
    """Aging lets a low-priority hunt run within a bounded wait despite a stream."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, max_concurrent=1, aging_per_second=0.1)
    runs = Runs(limiter, clock)
    runs.start("blocker", priority=10, hold=2.0)
    await clock.settle()
    runs.start("low", priority=0, hold=0.0)

    # A new high-priority hunt arrives every second, each taking 2 s: the
    # queue of high-priority work never drains.
    for number in range(300):
        runs.start(f"high-{number}", priority=10, hold=2.0)
        await clock.advance(1.0)

    # Priority 10 at 0.1 per second: after 100 s "low" outranks new arrivals,
    # and it only has the high hunts queued before that point ahead of it.
    assert "low" in runs.granted
    assert runs.granted["low"] <= 2 * 100.0 + 2.0
    await clock.advance(1_000.0)
    await asyncio.gather(*runs.tasks)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A hunt cancelled while queued is removed and does not take a slot."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, max_concurrent=1)
    runs = Runs(limiter, clock)
    runs.start("running", hold=5.0)
    gone = runs.start("gone", hold=5.0)
    runs.start("next", hold=5.0)
    await clock.settle()

    gone.cancel()
    await clock.advance(5.0)

    assert runs.granted == {"running": 0.0, "next": 5.0}
    assert limiter.queue_depth == 0
    await clock.advance(10.0)
    await asyncio.gather(*[t for t in runs.tasks if t is not gone])


# -- tenants and visibility ----------------------------------------------------


async def test_a_paused_tenant_never_delays_another() -> None:
    """Tenant A paused by a CPU 429 does not delay tenant B's hunt at all."""
    clock = ManualClock(start=0.0)
    limiter = Limiter(clock)
    paused = limiter.add("tenant-a", Limits())
    free = limiter.add("tenant-b", Limits())
    paused.on_throttled(throttled(CPU_QUOTA))
    a_runs = Runs(paused, clock)
    b_runs = Runs(free, clock)

    a_runs.start("a", hold=0.0)
    b_runs.start("b", hold=0.0)
    await clock.settle()

    assert b_runs.granted == {"b": 0.0}
    assert a_runs.granted == {}
    snapshot = limiter.snapshot()
    assert snapshot["tenant-a"]["paused_until"] == 900.0
    assert snapshot["tenant-b"]["paused_until"] is None
    await clock.advance(900.0)
    assert a_runs.granted == {"a": 900.0}
    await limiter.aclose()


def test_unknown_tenant_lists_the_known_ones() -> None:
    """Asking for a tenant without a limiter names the tenants that have one."""
    limiter = Limiter(ManualClock())
    limiter.add("contoso")

    with pytest.raises(LookupError, match="known: contoso"):
        limiter.for_tenant("fabrikam")


async def test_snapshot_reports_levels_queue_and_waits() -> None:
    """snapshot() shows window levels, CPU, queue depth, running, waits and 429s."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(2, 60.0),), cpu=(Rate(600, 3600.0),))
    runs = Runs(limiter, clock)
    for hunt in ("a", "b", "c"):
        runs.start(hunt, expected_cpu=10.0, hold=100.0)
    await clock.advance(30.0)
    waiting = limiter.snapshot()
    await clock.advance(300.0)

    assert waiting == {
        "tenant": "contoso",
        "calls": [
            {
                "count": 2,
                "per_seconds": 60.0,
                "used": 2,
                "left": 0,
                "blocked_until": None,
            }
        ],
        "cpu": [
            {
                "budget_s": 600,
                "per_seconds": 3600.0,
                "used_s": 0.0,
                "reserved_s": 20.0,
                "left_s": 580.0,
            }
        ],
        "queue_depth": 1,
        "running": 2,
        "paused_until": None,
        "waits": 0,
        "wait_total_s": 0.0,
        "throttled": 0,
    }
    final = limiter.snapshot()
    assert (final["waits"], final["wait_total_s"]) == (1, 60.0)
    assert final["cpu"][0]["used_s"] == 30.0
    await asyncio.gather(*runs.tasks)


async def test_permit_cannot_call_after_release() -> None:
    """A permit used after its block ends is an error, not a silent extra call."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock)

    async with limiter.acquire(hunt="a", priority=0, expected_cpu=0.0) as permit:
        await permit.call()
    kept: Permit = permit

    with pytest.raises(RuntimeError, match="released"):
        await kept.call()


async def test_first_call_counts_from_when_it_was_sent_not_granted() -> None:
    """A permit's first call sent after its grant holds the window from the send."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(1, 10.0),))
    runs = Runs(limiter, clock)

    async def slow_to_send() -> None:
        async with limiter.acquire(hunt="slow", priority=0, expected_cpu=0.0) as permit:
            await clock.sleep(5.0)
            await permit.call()

    slow = asyncio.create_task(slow_to_send())
    await clock.settle()
    runs.start("next", hold=0.0)
    await clock.advance(14.0)
    assert "next" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["next"] == 15.0
    await asyncio.gather(slow, *runs.tasks)


async def test_grant_log_names_what_the_hunt_waited_for() -> None:
    """The debug grant event carries the wait and the reasons behind it."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(1, 10.0),))
    runs = Runs(limiter, clock)
    runs.start("first", hold=0.0)
    await clock.settle()

    with capture_logs() as logs:
        runs.start("second", priority=2, expected_cpu=1.5, hold=0.0)
        await clock.advance(10.0)

    granted = [entry for entry in logs if entry["event"] == "limiter.granted"]
    assert granted == [
        {
            "event": "limiter.granted",
            "log_level": "debug",
            "tenant": "contoso",
            "hunt": "second",
            "priority": 2,
            "expected_cpu_s": 1.5,
            "waited_s": 10.0,
            "waited_for": "calls",
            "running": 1,
            "queue_depth": 0,
        }
    ]
    await asyncio.gather(*runs.tasks)


def test_parse_retry_after_reads_a_zone_less_http_date_as_gmt() -> None:
    """An HTTP date with "-0000" (no zone) is read as GMT, not local time."""
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()

    delay = parse_retry_after(
        {"Retry-After": "Sun, 01 Mar 2026 12:00:20 -0000"}, now=now
    )

    assert delay == 20.0


async def test_registry_compresses_windows_by_the_configured_time_scale() -> None:
    """Limits with time_scale 60 turn a one-minute window into one second."""
    clock = ManualClock(start=0.0)
    registry = Limiter(clock)
    limits = Limits(calls=(Rate(1, 60.0),), cpu=(Rate(600, 3600.0),), time_scale=60.0)
    limiter = registry.add("contoso", limits)
    runs = Runs(limiter, clock)

    runs.start("a", hold=0.0)
    runs.start("b", hold=0.0)
    await clock.advance(2.0)

    # One compressed second, its 0.5% margin, and the real-time skew floor.
    assert runs.granted["b"] == pytest.approx(1.0 + 0.005 + SKEW_FLOOR)
    assert limiter.snapshot()["calls"][0]["per_seconds"] == 1.0
    await asyncio.gather(*runs.tasks)
    with pytest.raises(ValueError, match="already"):
        registry.add("contoso", limits)


async def test_compressed_real_time_keeps_windows_and_fills_them() -> None:
    """On a ScaledClock the limiter never overfills a window yet keeps it busy."""
    clock = ScaledClock(600.0)
    rate = Rate(10, 60.0)
    limiter = TenantLimiter(
        "contoso",
        calls=(rate,),
        cpu=(Rate(600, 3600.0),),
        max_concurrent=8,
        clock=clock,
    )
    sent: list[float] = []

    async def run(hunt: str) -> None:
        async with limiter.acquire(hunt=hunt, priority=0, expected_cpu=1.0) as permit:
            await permit.call()
            sent.append(clock.now())
            await clock.sleep(2.0)
            permit.charge(1.0)

    started = clock.now()
    await asyncio.wait_for(asyncio.gather(*(run(f"h{n}") for n in range(25))), 5.0)

    for at in sent:
        assert sum(1 for t in sent if at - rate.per_seconds < t <= at) <= rate.count
    # 25 calls at 10 a minute: the last goes just after two full windows
    # (the upper bound leaves 60 ms of real time for a busy machine).
    assert 120.0 <= max(sent) - started < 160.0
    await limiter.aclose()


async def test_hundreds_of_hunts_due_at_once_use_the_hour_to_the_full() -> None:
    """With 2,000 cheap hunts queued an hour carries 1,500 calls, 45 a minute."""
    clock = ManualClock(start=0.0, settle_rounds=5)
    limiter = make_limiter(clock, max_concurrent=4, skew_margin=0.005)
    runs = Runs(limiter, clock)
    for number in range(2000):
        runs.start(f"hunt-{number}", priority=number % 3, expected_cpu=0.01, hold=1.0)

    await clock.advance(3600.0)

    assert len(runs.calls) == 1500
    # The first minute is full at once, and every window stays at 45 or below.
    assert sum(1 for t in runs.calls if t < 60.0) == 45
    calls = sorted(runs.calls)
    for sent in calls:
        in_window = bisect.bisect_right(calls, sent) - bisect.bisect_right(
            calls, sent - 60.0
        )
        assert in_window <= 45
    assert limiter.snapshot()["queue_depth"] == 500
    for task in runs.tasks:
        task.cancel()
    await asyncio.gather(*runs.tasks, return_exceptions=True)
    assert limiter.snapshot()["queue_depth"] == 0
    await limiter.aclose()


async def test_absurd_cpu_retry_after_pauses_at_most_the_longest_cpu_window() -> None:
    """A CPU 429 with Retry-After 1e9 pauses the tenant no longer than a CPU window."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0),), cpu_block_boundary=900.0)
    runs = Runs(limiter, clock)

    limiter.on_throttled(throttled(CPU_QUOTA, retry_after=1e9))
    runs.start("a", hold=0.0)
    await clock.advance(3600.0 + 900.0)

    assert runs.granted["a"] == 4500.0
    await asyncio.gather(*runs.tasks)


@pytest.mark.parametrize("full", [True, False])
async def test_absurd_call_retry_after_closes_the_window_at_most_its_length(
    full: bool,
) -> None:
    """A call-window 429 with Retry-After 1e9 closes that window no longer than it."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(3, 60.0), Rate(1500, 3600.0)))
    runs = Runs(limiter, clock)
    for hunt in ("a", "b", "c") if full else ():
        runs.start(hunt, hold=0.0)
    await clock.advance(1.0)

    limiter.on_throttled(
        throttled(
            CALL_QUOTA.format(limit=3, window="00:01:00"),
            window="00:01:00",
            limit=3,
            retry_after=1e9,
        )
    )
    runs.start("d", hold=0.0)
    await clock.advance(60.0)

    assert runs.granted["d"] == 61.0
    await asyncio.gather(*runs.tasks)


async def test_permit_released_before_any_call_gives_back_its_call_and_cpu() -> None:
    """A permit that sent nothing (token fetch failed) is charged no call and no CPU."""
    clock = ManualClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(1, 60.0),), cpu=(Rate(600, 3600.0),))
    runs = Runs(limiter, clock)

    with pytest.raises(RuntimeError, match="token"):
        async with limiter.acquire(hunt="unsent", priority=0, expected_cpu=500.0):
            raise RuntimeError("token endpoint unreachable")
    runs.start("next", expected_cpu=500.0, hold=0.0)
    await clock.settle()

    assert runs.granted == {"next": 0.0}
    await asyncio.gather(*runs.tasks)
    assert limiter.snapshot()["cpu"][0]["used_s"] == 500.0


async def test_cpu_429_without_retry_after_waits_as_long_as_its_message_says() -> None:
    """A CPU 429 saying "again in 05:00:00" holds the tenant 5 h, not one cycle."""
    clock = ManualClock(start=1000.0)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0), Rate(10800, 86400.0)))
    runs = Runs(limiter, clock)

    limiter.on_throttled(
        throttled(
            "You have exceeded processing resources allocated to this tenant. "
            "You can run queries again in 05:00:00."
        )
    )
    runs.start("a", hold=0.0)
    await clock.advance(5 * 3600.0 - 1.0)
    assert "a" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["a"] == 1000.0 + 5 * 3600.0
    await asyncio.gather(*runs.tasks)


async def test_time_scale_compresses_aging_like_the_windows() -> None:
    """At time_scale 60 a hunt waiting 8.5 s has aged 8.5 steps, as in 8.5 minutes."""
    clock = ManualClock(start=0.0)
    registry = Limiter(clock)
    limiter = registry.add("contoso", Limits(max_concurrent=1, time_scale=60.0))
    runs = Runs(limiter, clock)
    runs.start("blocker", hold=10.0)
    await clock.settle()
    runs.start("low", priority=0, hold=0.0)
    await clock.advance(8.5)
    runs.start("high", priority=8, hold=0.0)

    await clock.advance(5.0)

    assert runs.order == ["blocker", "low", "high"]
    await asyncio.gather(*runs.tasks)
    await registry.aclose()


async def test_two_thousand_hunts_waiting_for_cpu_queue_in_linear_time() -> None:
    """Queueing 2,000 hunts held back by CPU stays cheap, and a cheap one passes."""
    clock = ManualClock(start=0.0, settle_rounds=5)
    limiter = make_limiter(clock, cpu=(Rate(600, 3600.0),), max_concurrent=3)
    runs = Runs(limiter, clock)
    runs.start("spent", expected_cpu=595.0, hold=0.0)
    await clock.settle()

    started = time.process_time()
    for number in range(2000):
        runs.start(f"dear-{number}", expected_cpu=10.0 + number % 7, hold=0.0)
    runs.start("cheap", expected_cpu=1.0, hold=0.0)
    await clock.settle()
    spent = time.process_time() - started

    # About 0.05 s here; scanning the whole queue on every arrival took 5 s.
    assert spent < 1.0
    assert "cheap" in runs.granted and len(runs.granted) == 2
    assert limiter.queue_depth == 2000
    await clock.advance(3600.0)
    assert runs.granted["dear-0"] == 3600.0
    for task in runs.tasks:
        task.cancel()
    await asyncio.gather(*runs.tasks, return_exceptions=True)
    await limiter.aclose()


class SteppedClock(ManualClock):
    """A manual clock whose wall time an operator or NTP can step either way."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.offset = 0.0

    def now(self) -> float:
        return super().now() + self.offset

    def monotonic(self) -> float:
        return super().now()


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
async def test_wall_clock_steps_neither_stall_nor_open_a_call_window(
    step: float,
) -> None:
    """A call window frees 60 s after its call whichever way the wall clock steps."""
    clock = SteppedClock(start=0.0)
    limiter = make_limiter(clock, calls=(Rate(1, 60.0),))
    runs = Runs(limiter, clock)
    runs.start("first", hold=0.0)
    await clock.advance(1.0)

    clock.offset = step
    runs.start("second", hold=0.0)
    await clock.advance(58.0)
    assert "second" not in runs.granted
    await clock.advance(1.0)

    assert runs.granted["second"] == 60.0 + step
    await asyncio.gather(*runs.tasks)


async def test_cpu_pause_ends_at_the_wall_clock_quarter_hour() -> None:
    """Without Retry-After a CPU pause ends at the next 15-minute mark of wall time."""
    clock = SteppedClock(start=0.0)
    clock.offset = 1_767_225_600.0 + 600.0
    limiter = make_limiter(clock)

    limiter.on_throttled(throttled("Too many requests"))

    assert limiter.snapshot()["paused_until"] == 1_767_225_600.0 + 900.0


async def test_a_new_limiter_takes_back_what_the_journal_recorded(
    tmp_path: Path,
) -> None:
    """Calls, CPU and a CPU pause written to the state file survive a restart."""
    clock = ManualClock(start=1_000_000.0)
    state = State(tmp_path / "state.db")
    first = make_limiter(
        clock, calls=(Rate(3, 60.0),), cpu=(Rate(10, 3600.0),), journal=state
    )
    async with first.acquire(hunt="a", expected_cpu=1.0) as permit:
        await permit.call()
        permit.charge(4.0)
    first.on_throttled(throttled(CPU_QUOTA))
    paused_until = first.paused_until
    await first.aclose()

    await clock.advance(30.0)
    second = make_limiter(
        clock, calls=(Rate(3, 60.0),), cpu=(Rate(10, 3600.0),), journal=state
    )
    second.restore(state.quota_usage("contoso", clock.now() - second.memory))
    levels = second.snapshot()

    assert levels["calls"][0]["used"] == 1
    assert levels["cpu"][0]["used_s"] == 4.0
    assert paused_until is not None and levels["paused_until"] == paused_until
    await second.aclose()
    state.close()
