"""When hunts run and which window of time each run covers.

Windows leave no gaps: a run covers ``[watermark, now - delay]``, where the
watermark is where the previous successful run ended; a first run covers
``[now - delay - lookback, now - delay]``. A schedule that fires late, is
missed or is skipped therefore loses nothing: the next run's window starts
where the last one ended. Only the service's data window (30 days) can cut a
window short, and that is logged.

APScheduler 3.x fires the runs; it knows nothing of windows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from runner.hunts import Hunt, cron_trigger

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Window:
    """The half-open span of event time ``[start, end)`` one run covers."""

    start: datetime
    end: datetime
    clamped_from: datetime | None = None

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def next_window(
    hunt: Hunt,
    watermark: datetime | None,
    now: datetime,
    *,
    data_window: timedelta = timedelta(days=30),
) -> Window | None:
    """The window the next run of *hunt* covers, or None when it would be empty."""
    end = now - hunt.delay
    start = watermark if watermark is not None else end - hunt.lookback
    floor = now - data_window
    clamped_from = None
    if start < floor:
        # Older events are no longer queryable; say what is lost instead of
        # asking for it and pretending it was covered.
        clamped_from = start
        start = floor
    if end <= start:
        return None

    return Window(start=start, end=end, clamped_from=clamped_from)


def query_prelude(window: Window) -> str:
    """The ``let`` statements that give a query its window as names.

    ``HuntStart`` and ``HuntEnd`` are the window's bounds as KQL datetimes.
    They share the query's first line instead of adding lines of their own, so
    that the line numbers in the service's error messages are the query's.
    """
    return (
        f"let HuntStart = datetime({_kql_time(window.start)}); "
        f"let HuntEnd = datetime({_kql_time(window.end)}); "
    )


def _kql_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trigger_for(hunt: Hunt) -> IntervalTrigger | CronTrigger | OrTrigger:
    """The APScheduler trigger of a hunt's schedule, always in UTC."""
    jitter = int(hunt.schedule.jitter.total_seconds()) or None
    if hunt.schedule.cron is not None:
        return cron_trigger(hunt.schedule.cron, jitter=jitter)
    assert hunt.schedule.every is not None

    return IntervalTrigger(
        seconds=hunt.schedule.every.total_seconds(), timezone=UTC, jitter=jitter
    )


def build_scheduler(
    hunts: Sequence[Hunt],
    run: Callable[[Hunt], Awaitable[Any]],
    *,
    first_run_now: bool = True,
) -> AsyncIOScheduler:
    """A scheduler that calls ``run(hunt)`` on every hunt's schedule.

    ``coalesce`` folds a backlog of missed fires into one run, and one instance
    per hunt keeps runs of the same hunt from overlapping; both only shorten
    the list of runs, never the time covered, since windows start at the
    watermark.
    """
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    now = datetime.now(UTC)
    for hunt in hunts:
        # Passing next_run_time=None would pause the job, so leave it out unless
        # the first run is wanted at start.
        start: dict[str, Any] = {"next_run_time": now} if first_run_now else {}
        scheduler.add_job(
            run, trigger_for(hunt), args=[hunt], id=hunt.id, name=hunt.name, **start
        )
    scheduler.add_listener(
        _log_skipped, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
    )

    return scheduler


def _log_skipped(event: JobEvent) -> None:
    if isinstance(event, JobExecutionEvent) and event.code == EVENT_JOB_ERROR:
        log.error(
            "schedule.run_crashed", hunt=event.job_id, error=repr(event.exception)
        )
        return
    # A missed fire carries one time; a fire refused because the previous run
    # is still going carries the list of times it would have covered.
    times = getattr(event, "scheduled_run_times", None) or [
        getattr(event, "scheduled_run_time", None)
    ]
    reason = "missed" if event.code == EVENT_JOB_MISSED else "still_running"
    log.warning(
        "schedule.run_skipped",
        hunt=event.job_id,
        reason=reason,
        scheduled=[moment.isoformat() for moment in times if moment is not None],
        note="the next run's window starts at the watermark and covers this time",
    )
