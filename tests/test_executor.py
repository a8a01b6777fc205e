"""One run of a hunt: windows cut short by the row cap are fetched in parts."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from runner.config import load_config
from runner.daemon import Runtime
from runner.hunts import load_hunts
from runner.state import State

# Every process start of the last hour, with a column that makes rows unique.
QUERY = """\
DeviceProcessEvents
| where Timestamp >= HuntStart and Timestamp < HuntEnd
| project Timestamp, DeviceId, ReportId, ProcessCommandLine
"""


def _setup(
    tmp_path: Path,
    row_cap: int,
    lookback: str = "1h",
    *,
    backend: str = "graph",
    query: str = QUERY,
    faults: str = "{}",
    result_size: int = 124 * 1024 * 1024,
) -> tuple[object, list[object]]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "hunt-runner.yaml").write_text(
        f"""
tenants:
  lab:
    cloud: sandbox
    backend: {backend}
    limits: {{row_cap: {row_cap}, calls: ["1000/1m"], max_retries: 0}}
sinks:
  files: {{type: file, path: {tmp_path / "out"}}}
defaults: {{sinks: [files], lookback: {lookback}, delay: 5m}}
state: {{path: {tmp_path / "state.db"}}}
sandbox:
  days: 0.2
  live_arrival: false
  faults: {faults}
  quotas:
    row_cap: {row_cap}
    result_size_bytes: {result_size}
    calls: [{{calls: 1000, window_seconds: 60}}]
""",
        encoding="utf-8",
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "processes.yaml").write_text(
        "name: Processes\nquery: |\n"
        + "".join(f"  {line}\n" for line in query.splitlines())
    )
    settings, problems = load_config(config)
    assert settings is not None and not problems
    hunts, problems = load_hunts([jobs], settings.hunt_defaults)
    assert not problems

    return settings, hunts


def _records(tmp_path: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in (tmp_path / "out").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]


async def _truth(runtime: Runtime, start: object, end: object) -> int:
    """How many rows the hunt's window really holds, asked as one count."""
    from runner.client import timespan
    from runner.schedule import Window, query_prelude

    window = Window(start, end)  # type: ignore[arg-type]
    outcome = await runtime.clients["lab"].query(
        query_prelude(window) + QUERY + "| count",
        timespan=timespan(window.start, window.end),
    )

    return int(outcome.result.rows[0]["Count"])


async def test_a_window_over_the_row_cap_is_fetched_in_halves(tmp_path: Path) -> None:
    """A result at the row cap is fetched again as halves; every row arrives once."""
    settings, hunts = _setup(tmp_path, row_cap=100)

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:  # type: ignore[arg-type]
            (result,) = await runtime.run_once()
            assert result.ok and result.window is not None
            truth = await _truth(runtime, result.window.start, result.window.end)

    records = _records(tmp_path)
    assert truth > 200
    assert len(records) == truth
    assert len({r["event_id"] for r in records}) == truth
    splits = [e for e in events if e["event"] == "hunt.window_split"]
    (completed,) = [e for e in events if e["event"] == "hunt.completed"]
    assert splits and completed["parts"] == len(splits) + 1
    assert completed["rows"] == truth
    assert completed["calls"] == 2 * len(splits) + 1
    assert not [e for e in events if e["event"] == "hunt.result_truncated"]
    watermark = State(settings.state_path).watermark("processes", "lab")  # type: ignore[attr-defined]
    assert watermark == result.window.end


async def test_a_window_needing_more_splits_than_one_run_may_make_is_continued(
    tmp_path: Path,
) -> None:
    """Past the splits one run may make, the next run resumes at the watermark."""
    # About 1,300 rows in three hours, at most 40 a part: more than 16 halvings,
    # while no single minute holds 40.
    settings, hunts = _setup(tmp_path, row_cap=40, lookback="3h")

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:  # type: ignore[arg-type]
            (first,) = await runtime.run_once()
            assert first.ok and first.window is not None
            (second,) = await runtime.run_once()
            assert second.ok and second.window is not None
            truth = await _truth(runtime, first.window.start, second.window.end)

    catching_up = [e for e in events if e["event"] == "hunt.catching_up"]
    assert catching_up, "one run should not have covered the window"
    assert second.window.start == first.window.end
    assert catching_up[0]["deferred_from"] == first.window.end.isoformat()
    records = _records(tmp_path)
    assert len(records) == len({r["event_id"] for r in records}) == truth
    assert not [e for e in events if e["event"] == "hunt.result_truncated"]


async def test_a_query_blind_to_its_window_is_not_split_on_a_legacy_backend(
    tmp_path: Path,
) -> None:
    """Without HuntStart and Timespan a narrower window cannot help: no halvings."""
    # No filter on the window, and the MDE endpoint takes no Timespan: every
    # window, however short, answers with the same rows from 30 days.
    settings, hunts = _setup(
        tmp_path,
        row_cap=50,
        backend="mde",
        query="DeviceProcessEvents | project Timestamp, DeviceId, ReportId",
    )

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:  # type: ignore[arg-type]
            (first,) = await runtime.run_once()
            (second,) = await runtime.run_once()

    completed = [e for e in events if e["event"] == "hunt.completed"]
    assert [e["calls"] for e in completed] == [1, 1]
    assert not [e for e in events if e["event"] == "hunt.window_split"]
    truncated = [e for e in events if e["event"] == "hunt.result_truncated"]
    assert len(truncated) == 2 and "HuntStart" in truncated[0]["hint"]
    assert first.window is not None and second.window is not None
    watermark = State(settings.state_path).watermark("processes", "lab")  # type: ignore[attr-defined]
    assert watermark == second.window.end


async def test_a_run_failing_after_some_parts_keeps_and_counts_them(
    tmp_path: Path,
) -> None:
    """Parts stored before a failure stay, are counted, and are not fetched again."""
    # The whole hour reaches the cap, its first half is stored, the second
    # half's query fails.
    settings, hunts = _setup(
        tmp_path, row_cap=300, faults='{sequence: [ok, ok, "500"]}'
    )

    async with Runtime(settings, hunts) as runtime:  # type: ignore[arg-type]
        (failed,) = await runtime.run_once()
        stored = len(_records(tmp_path))
        watermark = State(settings.state_path).watermark("processes", "lab")  # type: ignore[attr-defined]
        (retried,) = await runtime.run_once()
        assert failed.window is not None and retried.window is not None
        truth = await _truth(runtime, failed.window.start, retried.window.end)

    assert not failed.ok and 0 < stored < truth
    assert failed.rows == stored
    assert watermark == retried.window.start
    assert failed.window.start < watermark < failed.window.end
    records = _records(tmp_path)
    assert len(records) == len({r["event_id"] for r in records}) == truth


async def test_a_window_over_the_result_size_is_fetched_in_halves(
    tmp_path: Path,
) -> None:
    """A result the service refuses as too large is fetched as halves instead."""
    # An hour of these rows is about 60 kB; the service takes at most 20 kB.
    settings, hunts = _setup(tmp_path, row_cap=100_000, result_size=20_000)

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:  # type: ignore[arg-type]
            (result,) = await runtime.run_once()
            assert result.ok, result.error
            assert result.window is not None
            truth = await _truth(runtime, result.window.start, result.window.end)

    records = _records(tmp_path)
    assert len(records) == len({r["event_id"] for r in records}) == truth > 0
    splits = [e for e in events if e["event"] == "hunt.window_split"]
    assert splits and splits[0]["reason"] == "result_size"
    watermark = State(settings.state_path).watermark("processes", "lab")  # type: ignore[attr-defined]
    assert watermark == result.window.end
