"""One run of one hunt in one tenant, from window to outbox.

The executor asks the state for the watermark, computes the window, waits for
the tenant's limiter (calls, CPU budget, priority), runs the query through the
client, turns rows into records and commits them to the outbox together with
the new watermark. It logs one ``hunt.completed`` or ``hunt.failed`` event per
run. A failed run leaves the watermark where it was, so its window is covered
by the next run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from runner.client import HuntingClient, timespan
from runner.clock import Clock
from runner.errors import HuntRunnerError
from runner.hunts import Hunt
from runner.limiter import Limiter, update_average
from runner.records import Record
from runner.results import to_records
from runner.schedule import Window, next_window, query_prelude
from runner.state import RunRecord, State

log = structlog.get_logger(__name__)

# What a hunt never run before is assumed to cost, in CPU seconds.
DEFAULT_EXPECTED_CPU = 1.0


@dataclass(frozen=True)
class RunResult:
    hunt: str
    tenant: str
    ok: bool
    rows: int = 0
    window: Window | None = None
    error: str | None = None


@dataclass
class Executor:
    """Runs hunts against tenants and hands their rows to the outbox."""

    state: State
    clients: Mapping[str, HuntingClient]
    limiter: Limiter
    clock: Clock
    sinks_for: Callable[[Hunt, Sequence[Record]], Sequence[str]]
    data_window: timedelta = timedelta(days=30)
    row_cap: int = 100_000
    wait_for_room: Callable[[], object] | None = None
    notify: Callable[[int], None] | None = None
    tenants_for: Callable[[Hunt], Sequence[str]] = field(
        default=lambda hunt: hunt.tenants
    )

    async def run(self, hunt: Hunt) -> list[RunResult]:
        """Run *hunt* in each of its tenants at once; no tenant waits for another."""
        tenants = self.tenants_for(hunt)

        return list(
            await asyncio.gather(*(self.run_in(hunt, tenant) for tenant in tenants))
        )

    async def run_in(self, hunt: Hunt, tenant: str) -> RunResult:
        """One run of *hunt* in *tenant*; never raises for a failure of the run."""
        run_id = uuid.uuid4().hex
        bound = log.bind(hunt=hunt.id, tenant=tenant, run_id=run_id)
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        watermark = await asyncio.to_thread(self.state.watermark, hunt.id, tenant)
        window = next_window(hunt, watermark, now, data_window=self.data_window)
        if window is None:
            bound.debug("hunt.nothing_to_do", watermark=str(watermark))
            return RunResult(hunt.id, tenant, ok=True)
        if window.clamped_from is not None:
            bound.warning(
                "hunt.window_clamped",
                requested_start=window.clamped_from.isoformat(),
                start=window.start.isoformat(),
                lost=str(window.start - window.clamped_from),
                reason="older events are outside the service's data window",
            )
        started = time.monotonic()
        calls = 0
        cpu = 0.0
        try:
            if self.wait_for_room is not None:
                await self.wait_for_room()  # type: ignore[misc]
            outcome, cpu = await self._query(hunt, tenant, window)
            calls = outcome.calls
            rows = outcome.result.rows
            if len(rows) >= self.row_cap:
                bound.warning(
                    "hunt.result_truncated",
                    rows=len(rows),
                    row_cap=self.row_cap,
                    hint="narrow the query or shorten the schedule interval",
                )
            emitted = rows
            if hunt.threshold is not None and not hunt.threshold.holds(len(rows)):
                emitted = ()
            records = to_records(
                emitted,
                hunt_id=hunt.id,
                hunt_name=hunt.name,
                severity=hunt.severity,
                tenant=tenant,
                window=(window.start, window.end),
                run_id=run_id,
                tags=hunt.tags,
                tactics=hunt.tactics,
                techniques=hunt.techniques,
            )
            duration = time.monotonic() - started
            run = RunRecord(
                run_id,
                hunt.id,
                tenant,
                window.start,
                window.end,
                "ok",
                len(records),
                calls,
                cpu,
                duration,
            )
            enqueued = await self.state.acommit_run(
                run, records, self.sinks_for(hunt, records)
            )
            if self.notify is not None:
                self.notify(enqueued)
        except (TimeoutError, HuntRunnerError) as error:
            message = _describe(error, hunt)
            duration = time.monotonic() - started
            bound.error(
                "hunt.failed",
                window_start=window.start.isoformat(),
                window_end=window.end.isoformat(),
                error=message,
                error_type=type(error).__name__,
                calls=calls,
                duration_s=round(duration, 3),
            )
            run = RunRecord(
                run_id,
                hunt.id,
                tenant,
                window.start,
                window.end,
                "failed",
                0,
                calls,
                cpu,
                duration,
                message,
            )
            await asyncio.to_thread(self.state.record_failure, run)
            return RunResult(hunt.id, tenant, ok=False, window=window, error=message)

        bound.info(
            "hunt.completed",
            window_start=window.start.isoformat(),
            window_end=window.end.isoformat(),
            rows=len(records),
            rows_fetched=len(rows),
            threshold_met=len(emitted) == len(rows),
            duration_s=round(duration, 3),
            calls=calls,
            cpu_s=round(cpu, 3),
        )

        return RunResult(hunt.id, tenant, ok=True, rows=len(records), window=window)

    async def _query(self, hunt: Hunt, tenant: str, window: Window):  # type: ignore[no-untyped-def]
        client = self.clients[tenant]
        limiter = self.limiter.for_tenant(tenant)
        expected = await asyncio.to_thread(self.state.cost, hunt.id, tenant)
        text = query_prelude(window) + hunt.query
        async with limiter.acquire(
            hunt=hunt.id,
            priority=hunt.priority,
            expected_cpu=expected if expected is not None else DEFAULT_EXPECTED_CPU,
        ) as permit:
            call = client.query(
                text,
                hunt=hunt.id,
                timespan=timespan(window.start, window.end),
                before_call=permit.call,
                on_throttled=limiter.on_throttled,
            )
            timeout = hunt.timeout.total_seconds() if hunt.timeout else None
            outcome = await asyncio.wait_for(call, timeout)
            cpu = outcome.result.cpu_seconds
            if cpu is None:
                # Graph reports no statistics: the elapsed time is the estimate.
                cpu = outcome.elapsed
            permit.charge(cpu)
        average = update_average(expected, cpu)
        await asyncio.to_thread(self.state.record_cost, hunt.id, tenant, average)

        return outcome, cpu


def _describe(error: BaseException, hunt: Hunt) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"timed out after {hunt.timeout}"

    return str(error)
