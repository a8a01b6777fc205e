"""The main job end to end: configuration and hunts in, records out, via the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import structlog

from runner.config import load_config
from runner.daemon import Runtime
from runner.errors import StateError
from runner.hunts import load_hunts
from runner.sandbox import Sandbox, SandboxSettings
from runner.state import State

REPO = Path(__file__).resolve().parents[1]


class ShiftedClock:
    """Real time moved by an offset a test can change: downtime without waiting."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset.total_seconds()

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(seconds, 0.0))


def _write_config(folder: Path, out: Path, state: Path) -> Path:
    config = folder / "config"
    config.mkdir()
    (config / "hunt-runner.yaml").write_text(
        f"""
tenants:
  lab:
    cloud: sandbox
    backend: graph
sinks:
  files:
    type: file
    path: {out}
defaults:
  schedule:
    every: 15m
  lookback: 1h
  delay: 5m
  sinks: [files]
state:
  path: {state}
sandbox:
  days: 1
  live_arrival: false
""",
        encoding="utf-8",
    )

    return config


def _hunt_file(folder: Path) -> Path:
    jobs = folder / "jobs"
    jobs.mkdir()
    (jobs / "appdata.yaml").write_text(
        """
name: PowerShell from AppData
severity: high
query: |
  DeviceProcessEvents
  | where Timestamp >= HuntStart and Timestamp < HuntEnd
  | where InitiatingProcessFileName =~ "powershell.exe"
  | where ProcessCommandLine contains "appdata"
  | project Timestamp, DeviceId, ProcessCommandLine
""",
        encoding="utf-8",
    )

    return jobs


async def test_restart_resumes_exactly_at_watermark(tmp_path: Path) -> None:
    """After downtime the next window starts at the watermark: no gap, no overlap."""
    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    jobs = _hunt_file(tmp_path)
    settings, problems = load_config(config)
    assert settings is not None and not problems
    hunts, problems = load_hunts([jobs], settings.hunt_defaults)
    assert not problems
    clock = ShiftedClock(-timedelta(hours=5))

    async with Sandbox(SandboxSettings.from_mapping(dict(settings.sandbox))) as sandbox:
        async with Runtime(settings, hunts, clock=clock, sandbox=sandbox) as runtime:
            first = await runtime.run_once()
        assert [r.ok for r in first] == [True]
        first_window = first[0].window
        assert first_window is not None
        assert first_window.duration == timedelta(hours=1)
        watermark = State(settings.state_path).watermark(hunts[0].id, "lab")
        assert watermark == first_window.end

        # The daemon is down while three hours of schedules pass.
        clock.offset += timedelta(hours=3).total_seconds()
        async with Runtime(settings, hunts, clock=clock, sandbox=sandbox) as runtime:
            second = await runtime.run_once()

    second_window = second[0].window
    assert second[0].ok
    assert second_window is not None
    assert second_window.start == first_window.end
    assert second_window.duration == pytest.approx(
        timedelta(hours=3), abs=timedelta(seconds=5)
    )
    assert first[0].rows > 0 and second[0].rows > 0

    lines = (tmp_path / "out").glob("*.jsonl")
    records = [
        json.loads(line) for path in lines for line in path.read_text().splitlines()
    ]
    assert len(records) == first[0].rows + second[0].rows
    assert len({r["event_id"] for r in records}) == len(records)
    for record in records:
        stamp = datetime.fromisoformat(record["row"]["Timestamp"])
        assert first_window.start <= stamp <= second_window.end


async def test_every_run_logs_one_canonical_event(tmp_path: Path) -> None:
    """A run logs one hunt.completed: hunt, tenant, window, rows, duration, calls."""
    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    settings, _ = load_config(config)
    assert settings is not None
    hunts, _ = load_hunts([_hunt_file(tmp_path)], settings.hunt_defaults)

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:
            await runtime.run_once()

    completed = [e for e in events if e["event"] == "hunt.completed"]
    assert len(completed) == 1
    event = completed[0]
    assert event["hunt"] == "appdata" and event["tenant"] == "lab"
    for field in ("window_start", "window_end", "rows", "duration_s", "calls"):
        assert field in event
    assert event["calls"] == 1 and event["rows"] > 0
    assert not [e for e in events if e["event"] == "hunt.failed"]

    # The limiter's levels reach the log too, not only the state file.
    (status,) = [e for e in events if e["event"] == "limiter.status"]
    assert status["tenant"] == "lab" and status["throttled"] == 0
    assert status["calls"][0]["used"] == 1
    assert {"queue_depth", "cpu", "waits"} <= set(status)


async def test_rejected_query_fails_its_hunt_only(tmp_path: Path) -> None:
    """A query the service rejects fails that hunt with its message; others run."""
    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    settings, _ = load_config(config)
    assert settings is not None
    jobs = _hunt_file(tmp_path)
    (jobs / "broken.yaml").write_text(
        "name: Broken\nquery: |\n  NoSuchTable | take 1\n", encoding="utf-8"
    )
    hunts, problems = load_hunts([jobs], settings.hunt_defaults)
    assert not problems

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:
            results = await runtime.run_once()

    by_hunt = {r.hunt: r for r in results}
    assert by_hunt["appdata"].ok
    assert not by_hunt["broken"].ok
    assert "NoSuchTable" in (by_hunt["broken"].error or "")
    failed = [e for e in events if e["event"] == "hunt.failed"]
    assert [e["hunt"] for e in failed] == ["broken"]
    assert failed[0]["error_type"] == "QueryError"
    assert failed[0]["calls"] == 1
    assert State(settings.state_path).watermark("broken", "lab") is None


def test_run_once_with_shipped_config_writes_every_hunt(tmp_path: Path) -> None:
    """`run --once` with the shipped files writes JSONL records for every hunt."""
    environment = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "--once",
            "--config",
            str(REPO / "config"),
            "--jobs",
            str(REPO / "jobs"),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    hunts = sorted(p.stem for p in (REPO / "jobs").glob("*.yaml"))
    written = sorted(p.stem for p in (tmp_path / "out").glob("*.jsonl"))
    assert written == hunts
    for path in (tmp_path / "out").glob("*.jsonl"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines, path
        record = json.loads(lines[0])
        assert record["hunt"]["id"] == path.stem
        assert record["tenant"] == "sandbox"
    assert "client_secret" not in done.stderr
    assert (tmp_path / "state" / "hunt-runner.db").exists()


def test_sigterm_finishes_work_in_flight_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM stops the daemon cleanly: runs in flight finish, exit status 0."""
    import signal

    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    jobs = _hunt_file(tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "--config",
            str(config),
            "--jobs",
            str(jobs),
        ],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in process.stderr:
        seen.append(line)
        if '"hunt.completed"' in line or time.monotonic() > deadline:
            break
    health = [sys.executable, "-m", "runner.cli", "health", "--config", str(config)]
    deadline = time.monotonic() + 30
    while (check := subprocess.run(health, capture_output=True, text=True)).returncode:
        # The first status is written once the first runs are committed.
        assert time.monotonic() < deadline, check.stderr
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    # Stopped, the daemon is unhealthy at once, though its status is recent.
    after = subprocess.run(health, cwd=tmp_path, capture_output=True, text=True)
    assert after.returncode == 1 and "no hunt-runner is running" in after.stderr
    events = [
        json.loads(line)["event"]
        for line in seen + rest.splitlines()
        if line.startswith("{")
    ]
    assert process.returncode == 0
    assert "hunt.completed" in events
    assert "daemon.stopped" in events
    assert State(tmp_path / "state.db").watermark("appdata", "lab") is not None


def test_sigterm_during_a_run_lets_the_run_finish(tmp_path: Path) -> None:
    """SIGTERM while a query is in flight: the run completes and its rows are kept."""
    import signal

    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    with (config / "hunt-runner.yaml").open("a", encoding="utf-8") as handle:
        handle.write("  extra_latency_seconds: 4\n")
    jobs = _hunt_file(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run"]
        + ["--config", str(config), "--jobs", str(jobs)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if '"daemon.started"' in line:
            break
    # The first run starts at once and its query takes four seconds.
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    events = [
        json.loads(line)["event"]
        for line in seen + rest.splitlines()
        if line.startswith("{")
    ]
    assert process.returncode == 0
    assert "hunt.completed" in events, rest[-3000:]
    assert "schedule.run_crashed" not in events
    assert State(tmp_path / "state.db").watermark("appdata", "lab") is not None
    assert (tmp_path / "out" / "appdata.jsonl").stat().st_size > 0


async def test_a_second_daemon_on_the_same_state_file_is_refused(
    tmp_path: Path,
) -> None:
    """While one runtime runs hunts on a state file, a second one cannot start."""
    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    settings, _ = load_config(config)
    assert settings is not None
    hunts, _ = load_hunts([_hunt_file(tmp_path)], settings.hunt_defaults)

    async with Sandbox(SandboxSettings.from_mapping(dict(settings.sandbox))) as sandbox:
        async with Runtime(settings, hunts, sandbox=sandbox):
            with pytest.raises(StateError) as caught:
                async with Runtime(settings, hunts, sandbox=sandbox):
                    pass
            assert f"state file {settings.state_path} is in use" in str(caught.value)
            assert f"pid {os.getpid()}" in str(caught.value)
        # Once the first one stopped, the state file is free again.
        async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
            assert [r.ok for r in await runtime.run_once()] == [True]


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_an_interrupted_run_once_does_not_exit_zero(
    tmp_path: Path, signum: str
) -> None:
    """SIGINT or SIGTERM during run --once stops it with status 1, not 0 or a kill."""
    import signal

    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    with (config / "hunt-runner.yaml").open("a", encoding="utf-8") as handle:
        handle.write("  extra_latency_seconds: 5\n")
    jobs = _hunt_file(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "run", "--once"]
        + ["--config", str(config), "--jobs", str(jobs)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if '"sandbox.embedded"' in line:
            break
    time.sleep(1.0)
    process.send_signal(getattr(signal, signum))
    _, rest = process.communicate(timeout=60)
    events = [
        json.loads(line)["event"]
        for line in seen + rest.splitlines()
        if line.startswith("{")
    ]
    assert process.returncode == 1, rest[-3000:]
    assert "run.interrupted" in events
    assert State(tmp_path / "state.db").watermark("appdata", "lab") is None


async def test_health_reports_a_run_once_in_progress_as_healthy(tmp_path: Path) -> None:
    """`health` during run --once sees the lock held and a status written at start."""
    config = _write_config(tmp_path, tmp_path / "out", tmp_path / "state.db")
    with (config / "hunt-runner.yaml").open("a", encoding="utf-8") as file:
        file.write("  extra_latency_seconds: 3\n")
    settings, _ = load_config(config)
    assert settings is not None
    hunts, _ = load_hunts([_hunt_file(tmp_path)], settings.hunt_defaults)

    async with Runtime(settings, hunts) as runtime:
        run = asyncio.ensure_future(runtime.run_once())
        health = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runner.cli",
            "health",
            "--config",
            str(config),
            stderr=asyncio.subprocess.PIPE,
        )
        _, complaint = await health.communicate()
        assert not run.done(), "the run should still be waiting for the sandbox"
        assert [r.ok for r in await run] == [True]

    assert health.returncode == 0, complaint.decode()


async def test_the_daemon_goes_on_with_a_catch_up_without_waiting_for_the_schedule(
    tmp_path: Path,
) -> None:
    """A run that stops short of its window for want of halvings is followed at once."""
    config = tmp_path / "config"
    config.mkdir()
    # About 1,300 rows in three hours, at most 40 a part: more than 16 halvings.
    (config / "hunt-runner.yaml").write_text(
        f"""
tenants:
  lab:
    cloud: sandbox
    limits: {{row_cap: 40, calls: ["1000/1m"]}}
sinks:
  files: {{type: file, path: {tmp_path / "out"}}}
defaults: {{sinks: [files], lookback: 3h, delay: 5m, schedule: {{every: 1d}}}}
state: {{path: {tmp_path / "state.db"}}}
sandbox:
  days: 0.2
  live_arrival: false
  quotas: {{row_cap: 40, calls: [{{calls: 1000, window_seconds: 60}}]}}
""",
        encoding="utf-8",
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "processes.yaml").write_text(
        "name: Processes\nquery: |\n  DeviceProcessEvents\n"
        "  | where Timestamp >= HuntStart and Timestamp < HuntEnd\n"
        "  | project Timestamp, DeviceId, ReportId\n",
        encoding="utf-8",
    )
    settings, _ = load_config(config)
    assert settings is not None
    hunts, _ = load_hunts([jobs], settings.hunt_defaults)
    stop = asyncio.Event()

    def completed() -> list[dict[str, object]]:
        return [e for e in events if e["event"] == "hunt.completed"]

    with structlog.testing.capture_logs() as events:
        async with Runtime(settings, hunts) as runtime:
            daemon = asyncio.ensure_future(runtime.run_forever(stop))
            for _ in range(300):
                if completed() and "deferred_from" not in completed()[-1]:
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await daemon

    runs = completed()
    assert len(runs) > 1 and "deferred_from" in runs[0]
    assert "deferred_from" not in runs[-1]
    watermark = State(settings.state_path).watermark("processes", "lab")
    assert watermark is not None and watermark.isoformat() == runs[-1]["window_end"]
