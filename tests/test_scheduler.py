"""The scheduler: a run skipped because the previous one is still going is logged."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from runner.hunts import Hunt, Schedule
from runner.schedule import build_scheduler


def _hunt() -> Hunt:
    return Hunt(
        id="slow",
        name="Slow",
        description="",
        query="print 1",
        schedule=Schedule(every=timedelta(seconds=1), cron=None),
        lookback=timedelta(hours=1),
        delay=timedelta(0),
        tenants=(),
        sinks=(),
        severity="low",
        tags=(),
        tactics=(),
        techniques=(),
        enabled=True,
        priority=5,
        threshold=None,
        timeout=None,
        source="slow.yaml",
        line=1,
        kind="hunt-runner",
    )


async def test_overlapping_run_is_skipped_and_logged() -> None:
    """A fire while the same hunt still runs is skipped with a warning, not queued."""
    started = []

    async def run(hunt: Hunt) -> None:
        started.append(hunt.id)
        await asyncio.sleep(2.5)

    scheduler = build_scheduler([_hunt()], run)
    with structlog.testing.capture_logs() as events:
        scheduler.start()
        await asyncio.sleep(2.2)
        scheduler.shutdown(wait=False)

    skipped = [e for e in events if e["event"] == "schedule.run_skipped"]
    assert started == ["slow"]
    assert skipped and skipped[0]["hunt"] == "slow"
    assert skipped[0]["reason"] == "still_running"
    assert skipped[0]["log_level"] == "warning"
