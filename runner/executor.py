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
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from runner.client import HuntingClient, timespan
from runner.clock import Clock
from runner.errors import HuntRunnerError, QueryError
from runner.hunts import Hunt
from runner.limiter import Limiter, update_average
from runner.records import Record
from runner.results import to_records
from runner.schedule import Window, next_window, query_prelude
from runner.state import RunRecord, State

log = structlog.get_logger(__name__)

# What a hunt never run before is assumed to cost, in CPU seconds.
DEFAULT_EXPECTED_CPU = 1.0
# The service's row cap: a result this long was probably cut short.
DEFAULT_ROW_CAP = 100_000
# A truncated part shorter than this is stored as it is (with a warning): the
# query returns too many rows per minute, or ignores its window.
MIN_PART = timedelta(minutes=1)
# Halvings one run may make; what is left waits for the next run, which starts
# at the watermark the parts fetched so far moved.
MAX_SPLITS = 16
# A query that names neither bound sees its window only through the request's
# Timespan (Graph); a name in a comment merely keeps the halving on.
_NAMES_WINDOW = re.compile(r"\bHunt(?:Start|End)\b")
# How the service words its refusal of a result over its size limit (a 400).
_RESULT_TOO_LARGE = "exceeded the allowed result size"


@dataclass(frozen=True)
class RunResult:
    hunt: str
    tenant: str
    ok: bool
    rows: int = 0
    window: Window | None = None
    error: str | None = None
    # The run stopped short of its window for want of halvings; the rest is
    # for the next run, which should not wait for the schedule.
    catching_up: bool = False


@dataclass
class Executor:
    """Runs hunts against tenants and hands their rows to the outbox."""

    state: State
    clients: Mapping[str, HuntingClient]
    limiter: Limiter
    clock: Clock
    sinks_for: Callable[[Hunt, Sequence[Record]], Sequence[str]]
    data_window: timedelta = timedelta(days=30)
    row_caps: Mapping[str, int] = field(default_factory=dict)
    wait_for_room: Callable[..., object] | None = None
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
        tally = _Tally(started=time.monotonic())
        # The parts of the window still to fetch, earliest first. A part whose
        # result reaches the row cap was probably cut short by the service, and
        # one over its result size refused: either is fetched again as two
        # halves instead of being stored incomplete or failing every run.
        pending = [window]
        try:
            while pending:
                part = pending.pop(0)
                if self.wait_for_room is not None:
                    await self.wait_for_room(  # type: ignore[misc]
                        hunt=hunt.id, tenant=tenant
                    )
                refused: QueryError | None = None
                try:
                    rows = await self._query(hunt, tenant, part, tally)
                except QueryError as error:
                    if _RESULT_TOO_LARGE not in error.message:
                        raise
                    # Over the service's result size: a shorter window is the
                    # only way to its rows, as for a result at the row cap.
                    refused, rows = error, ()
                tally.fetched += len(rows)
                if refused is not None or len(rows) >= self._row_cap(tenant):
                    narrows = self._window_narrows(hunt, tenant)
                    halves = self._split(part, tally) if narrows else []
                    if halves:
                        bound.warning(
                            "hunt.window_split",
                            window_start=part.start.isoformat(),
                            window_end=part.end.isoformat(),
                            rows=len(rows),
                            row_cap=self._row_cap(tenant),
                            reason="row_cap" if refused is None else "result_size",
                            note="the result reached the service's limit; each "
                            "half is fetched on its own",
                        )
                        pending[:0] = halves
                        continue
                    if narrows and part.duration > MIN_PART:
                        # Out of splits for this run: stop before the part so
                        # the next run starts there, instead of losing rows.
                        tally.deferred = part.start
                        break
                    if refused is not None:
                        raise refused
                    bound.warning(
                        "hunt.result_truncated",
                        window_start=part.start.isoformat(),
                        window_end=part.end.isoformat(),
                        rows=len(rows),
                        row_cap=self._row_cap(tenant),
                        hint=_truncation_hint(narrows),
                    )
                await self._commit(hunt, tenant, run_id, window, part, rows, tally)
        except (TimeoutError, HuntRunnerError) as error:
            message = _describe(error, hunt)
            duration = time.monotonic() - tally.started
            failed_from = tally.committed_to or window.start
            bound.error(
                "hunt.failed",
                window_start=failed_from.isoformat(),
                window_end=window.end.isoformat(),
                error=message,
                error_type=type(error).__name__,
                rows=tally.emitted,
                calls=tally.calls,
                duration_s=round(duration, 3),
            )
            run = RunRecord(
                run_id,
                hunt.id,
                tenant,
                failed_from,
                window.end,
                "failed",
                tally.emitted,
                tally.calls,
                tally.cpu,
                duration,
                message,
            )
            await asyncio.to_thread(self.state.record_failure, run)
            # Parts stored before the failure are kept: count their rows.
            return RunResult(
                hunt.id,
                tenant,
                ok=False,
                rows=tally.emitted,
                window=window,
                error=message,
            )

        covered = Window(window.start, tally.committed_to or window.start)
        fields = {}
        if tally.parts > 1 or tally.deferred is not None:
            fields["parts"] = tally.parts
        if tally.deferred is not None:
            fields["deferred_from"] = tally.deferred.isoformat()
            bound.warning(
                "hunt.catching_up",
                deferred_from=tally.deferred.isoformat(),
                window_end=window.end.isoformat(),
                note="the rest of the window is fetched by the next run",
            )
        bound.info(
            "hunt.completed",
            window_start=covered.start.isoformat(),
            window_end=covered.end.isoformat(),
            rows=tally.emitted,
            rows_fetched=tally.fetched,
            threshold_met=tally.threshold_met,
            duration_s=round(time.monotonic() - tally.started, 3),
            calls=tally.calls,
            cpu_s=round(tally.cpu, 3),
            **fields,
        )

        return RunResult(
            hunt.id,
            tenant,
            ok=True,
            rows=tally.emitted,
            window=covered,
            catching_up=tally.deferred is not None,
        )

    def _row_cap(self, tenant: str) -> int:
        return self.row_caps.get(tenant, DEFAULT_ROW_CAP)

    def _window_narrows(self, hunt: Hunt, tenant: str) -> bool:
        """Whether a narrower window can give *hunt* fewer rows in *tenant*.

        On a legacy endpoint a query that ignores ``HuntStart`` and ``HuntEnd``
        answers every window, however short, with the same rows: halving it
        would cost two calls a halving, every run, and store nothing more.
        """
        if self.clients[tenant].sends_timespan:
            return True

        return _NAMES_WINDOW.search(hunt.query) is not None

    def _split(self, part: Window, tally: _Tally) -> list[Window]:
        """*part* as two halves, or nothing when it is too short or splits ran out."""
        if part.duration <= MIN_PART:
            return []
        if tally.splits >= MAX_SPLITS and tally.committed_to is not None:
            # Some of the window is stored, so the next run makes progress.
            return []
        tally.splits += 1
        middle = part.start + part.duration / 2

        return [Window(part.start, middle), Window(middle, part.end)]

    async def _commit(
        self,
        hunt: Hunt,
        tenant: str,
        run_id: str,
        window: Window,
        part: Window,
        rows: Sequence[Mapping[str, object]],
        tally: _Tally,
    ) -> None:
        """Store one part's records and move the watermark to the part's end."""
        emitted = rows
        if hunt.threshold is not None:
            # A split window held at least a row cap of rows in all; its parts
            # count as that many, not as their own share.
            count = max(len(rows), self._row_cap(tenant) if tally.splits else 0)
            if not hunt.threshold.holds(count):
                emitted = ()
                tally.threshold_met = False
        records = to_records(
            emitted,
            hunt_id=hunt.id,
            hunt_name=hunt.name,
            severity=hunt.severity,
            tenant=tenant,
            window=(part.start, part.end),
            run_id=run_id,
            tags=hunt.tags,
            tactics=hunt.tactics,
            techniques=hunt.techniques,
        )
        tally.emitted += len(records)
        tally.parts += 1
        run = RunRecord(
            run_id,
            hunt.id,
            tenant,
            window.start,
            part.end,
            "ok",
            tally.emitted,
            tally.calls,
            tally.cpu,
            time.monotonic() - tally.started,
        )
        enqueued = await self.state.acommit_run(
            run, records, self.sinks_for(hunt, records)
        )
        tally.committed_to = part.end
        if self.notify is not None:
            self.notify(enqueued)

    async def _query(
        self, hunt: Hunt, tenant: str, window: Window, tally: _Tally
    ) -> Sequence[Mapping[str, object]]:
        """The rows of *hunt* over *window*, within the tenant's quota.

        What the query used (calls, CPU) goes into *tally*, also when it fails.
        """
        client = self.clients[tenant]
        limiter = self.limiter.for_tenant(tenant)
        expected = await asyncio.to_thread(self.state.cost, hunt.id, tenant)
        text = query_prelude(window) + hunt.query
        async with limiter.acquire(
            hunt=hunt.id,
            priority=hunt.priority,
            expected_cpu=expected if expected is not None else DEFAULT_EXPECTED_CPU,
        ) as permit:
            try:
                call = client.query(
                    text,
                    hunt=hunt.id,
                    timespan=timespan(window.start, window.end),
                    before_call=permit.call,
                    on_throttled=limiter.on_throttled,
                )
                timeout = hunt.timeout.total_seconds() if hunt.timeout else None
                async with asyncio.timeout(timeout):
                    outcome = await call
            finally:
                tally.calls += permit.calls
            cpu = outcome.result.cpu_seconds
            if cpu is None:
                # Graph reports no statistics: the elapsed time is the estimate.
                cpu = outcome.elapsed
            permit.charge(cpu)
        tally.cpu += cpu
        average = update_average(expected, cpu)
        await asyncio.to_thread(self.state.record_cost, hunt.id, tenant, average)

        return outcome.result.rows


@dataclass
class _Tally:
    """What one run has used and stored so far, across the parts of its window."""

    started: float
    calls: int = 0
    cpu: float = 0.0
    fetched: int = 0
    emitted: int = 0
    parts: int = 0
    splits: int = 0
    threshold_met: bool = True
    committed_to: datetime | None = None
    deferred: datetime | None = None


def _truncation_hint(narrows: bool) -> str:
    if not narrows:
        return (
            "the query does not use HuntStart or HuntEnd and this endpoint takes "
            "no Timespan, so a shorter window returns the same rows; filter with "
            "Timestamp >= HuntStart and Timestamp < HuntEnd"
        )

    return (
        f"the query returns more rows than the cap in "
        f"{MIN_PART.total_seconds():.0f} s of events; narrow it"
    )


def _describe(error: BaseException, hunt: Hunt) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"timed out after {hunt.timeout}"

    return str(error)
