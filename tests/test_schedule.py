"""Windows: no gaps, no unintended overlap, clamping to the data window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb_kql
import pytest

from runner.hunts import Hunt, Schedule
from runner.schedule import Window, next_window, query_prelude, trigger_for

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _hunt(**changes: object) -> Hunt:
    fields: dict[str, object] = dict(
        id="h",
        name="H",
        description="",
        query="print 1",
        schedule=Schedule(every=timedelta(minutes=15), cron=None),
        lookback=timedelta(hours=1),
        delay=timedelta(minutes=5),
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
        source="h.yaml",
        line=1,
        kind="hunt-runner",
    )
    fields.update(changes)
    return Hunt(**fields)  # type: ignore[arg-type]


def test_first_window_covers_lookback_before_delay() -> None:
    """A first run covers [now - delay - lookback, now - delay]."""
    window = next_window(_hunt(), None, NOW)
    assert window == Window(NOW - timedelta(minutes=65), NOW - timedelta(minutes=5))


def test_next_window_starts_at_watermark() -> None:
    """A later run starts exactly where the previous one ended."""
    mark = NOW - timedelta(minutes=20)
    window = next_window(_hunt(), mark, NOW)
    assert window is not None
    assert window.start == mark
    assert window.end == NOW - timedelta(minutes=5)


def test_downtime_gap_is_covered_then_clamped_to_data_window() -> None:
    """After long downtime the window reaches back to the watermark, at most 30 days."""
    week_ago = NOW - timedelta(days=7)
    assert next_window(_hunt(), week_ago, NOW).start == week_ago  # type: ignore[union-attr]
    old = NOW - timedelta(days=40)
    window = next_window(_hunt(), old, NOW)
    assert window is not None
    assert window.start == NOW - timedelta(days=30)
    assert window.clamped_from == old


def test_empty_window_is_none() -> None:
    """When the watermark is already at now - delay there is nothing to run."""
    assert next_window(_hunt(), NOW - timedelta(minutes=5), NOW) is None


def test_prelude_names_the_window_for_kql() -> None:
    """HuntStart and HuntEnd are usable KQL datetimes with the window's bounds."""
    window = Window(NOW - timedelta(hours=1), NOW)
    query = query_prelude(window) + "print s = HuntStart, e = HuntEnd"
    con = duckdb_kql.connect()
    start, end = duckdb_kql.kql(con, query).fetchall()[0]
    assert start.replace(tzinfo=UTC) == window.start
    assert end.replace(tzinfo=UTC) == window.end


def test_cron_and_interval_triggers_are_utc() -> None:
    """Both schedule forms fire on UTC times."""
    cron = trigger_for(_hunt(schedule=Schedule(every=None, cron="*/15 * * * *")))
    fire = cron.get_next_fire_time(None, NOW + timedelta(minutes=1))
    assert fire == datetime(2026, 12, 3, 12, 15, tzinfo=UTC)
    interval = trigger_for(_hunt())
    assert interval.get_next_fire_time(None, NOW).tzinfo is not None


@pytest.mark.parametrize(
    ("crontab", "weekdays"),
    [
        ("0 9 * * 1", ["Monday"]),
        ("0 9 * * 1-5", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
        ("0 9 * * 0", ["Sunday"]),
        ("0 9 * * 7", ["Sunday"]),
        ("0 9 * * 6,0", ["Saturday", "Sunday"]),
        ("0 9 * * */3", ["Sunday", "Wednesday", "Saturday"]),
        ("0 9 * * mon-fri", ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]),
    ],
)
def test_cron_days_of_week_are_numbered_as_crontab_numbers_them(
    crontab: str, weekdays: list[str]
) -> None:
    """Day-of-week numbers mean what they mean in crontab: 0 and 7 are Sunday."""
    trigger = trigger_for(_hunt(schedule=Schedule(every=None, cron=crontab)))
    fires, fire = [], NOW
    while (fire := trigger.get_next_fire_time(None, fire)) < NOW + timedelta(days=7):
        fires.append(fire.strftime("%A"))
        fire += timedelta(seconds=1)
    assert sorted(fires) == sorted(weekdays)


def test_cron_day_of_month_or_day_of_week_as_in_crontab() -> None:
    """With both day fields restricted, a cron fires on days matching either one."""
    trigger = trigger_for(_hunt(schedule=Schedule(every=None, cron="0 0 1 * 1")))
    fires, fire = [], NOW
    while (fire := trigger.get_next_fire_time(None, fire)) < NOW + timedelta(days=35):
        fires.append(fire.date().isoformat())
        fire += timedelta(seconds=1)
    assert fires == [
        "2026-12-07",
        "2026-12-14",
        "2026-12-21",
        "2026-12-28",
        "2027-01-01",
        "2027-01-04",
    ]


def test_prelude_keeps_the_query_line_numbers() -> None:
    """The window's lets share the first line, so a query's line n stays line n."""
    window = Window(NOW - timedelta(hours=1), NOW)
    query = "print a = 1\n| extend b = 2\n| where a ==="
    diagnostics = duckdb_kql.validate(query_prelude(window) + query)

    assert "\n" not in query_prelude(window)
    assert [d.span.line for d in diagnostics] == [3]
