"""The quota work end to end: the daemon's runtime against the sandbox's quotas.

Every test starts a sandbox with compressed windows and runs hunts through
``Runtime`` (real msal, real HTTPS, the real limiter, a real state file); the
sandbox's own decisions are recorded by wrapping its quota ledger, so the
assertions count what the server counted.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from runner import cli
from runner.config import Settings, load_config
from runner.daemon import Runtime
from runner.hunts import Hunt, Schedule
from runner.sandbox import (
    CallLimit,
    ClientSettings,
    CpuLimit,
    QuotaSettings,
    Sandbox,
    SandboxSettings,
)
from runner.sandbox.quotas import QuotaRefusal
from runner.state import State

CHEAP_QUERY = "DeviceInfo | take 1"
ROOMY_CPU = (CpuLimit(10_000.0, 60.0),)


@dataclass
class Seen:
    """What the sandbox decided for one tenant, in the sandbox's time."""

    admitted: list[float] = field(default_factory=list)
    refused: list[tuple[float, QuotaRefusal]] = field(default_factory=list)

    def arrivals(self) -> list[float]:
        return sorted([*self.admitted, *(at for at, _ in self.refused)])


class QuotaTap:
    """Records each admission and refusal of the sandbox without changing any."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.seen: dict[str, Seen] = defaultdict(Seen)
        quotas = sandbox.quotas
        admit = quotas.admit

        def admit_and_record(tenant: str) -> QuotaRefusal | None:
            refusal = admit(tenant)
            if refusal is None:
                # The very instant the sandbox counted the call.
                self.seen[tenant].admitted.append(quotas._calls[tenant][-1])
            else:
                self.seen[tenant].refused.append((quotas.clock.time(), refusal))

            return refusal

        quotas.admit = admit_and_record  # type: ignore[method-assign]


def busiest(times: Sequence[float], span: float) -> int:
    """The most of *times* inside any window ``(t - span, t]``."""
    ordered = sorted(times)
    most, first = 0, 0
    for index, at in enumerate(ordered):
        while ordered[first] <= at - span:
            first += 1
        most = max(most, index - first + 1)

    return most


def make_hunt(name: str, tenant: str, *, priority: int = 5) -> Hunt:
    """A cheap hunt for one tenant, as the loader would build it."""
    return Hunt(
        id=name,
        name=name,
        description="",
        query=CHEAP_QUERY,
        schedule=Schedule(every=timedelta(minutes=15), cron=None),
        lookback=timedelta(hours=1),
        delay=timedelta(minutes=5),
        tenants=(tenant,),
        sinks=(),
        severity="low",
        tags=(),
        tactics=(),
        techniques=(),
        enabled=True,
        priority=priority,
        threshold=None,
        timeout=None,
        source="test",
        line=1,
        kind="hunt",
    )


def write_config(folder: Path, tenants: str) -> Settings:
    """A configuration folder with *tenants* (YAML) and a state file inside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hunt-runner.yaml").write_text(
        "tenants:\n"
        + textwrap.indent(textwrap.dedent(tenants), "  ")
        + f"state:\n  path: {folder / 'state.db'}\n"
        + "logging:\n  level: warning\n",
        encoding="utf-8",
    )
    settings, problems = load_config(folder)
    assert settings is not None, problems

    return settings


@pytest.fixture
async def sandbox_factory() -> AsyncIterator[Any]:
    """Starts sandboxes with the given quotas; all are stopped after the test."""
    started: list[Sandbox] = []

    async def start(quotas: QuotaSettings) -> Sandbox:
        sandbox = Sandbox(
            SandboxSettings(
                days=1, events_per_hour=200, live_arrival=False, quotas=quotas
            )
        )
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        await sandbox.stop()


def arrivals_during_pauses(
    seen: Seen, grace: float = 0.05
) -> list[tuple[float, float]]:
    """Arrivals that came during a 429's ``Retry-After`` (beyond calls in flight).

    A call sent before a 429 was answered may still arrive a moment after it;
    *grace* covers those.
    """
    offending = []
    arrivals = seen.arrivals()
    for refused_at, refusal in seen.refused:
        quiet_from = refused_at + grace
        quiet_until = refused_at + refusal.retry_after - 0.01
        offending += [
            (refused_at, at) for at in arrivals if quiet_from < at < quiet_until
        ]

    return offending


async def test_burst_stays_within_the_call_window(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """A hundred hunts due at once at 10 calls a second: no 429, never 11 in 1 s."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(10, 1.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          limits:
            calls: ["10/1s"]
        """,
    )
    hunts = [make_hunt(f"burst-{index:03d}", "alpha") for index in range(100)]

    async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
        results = await runtime.run_once()
        throttled = runtime.limiter.for_tenant("alpha").throttled

    seen = tap.seen[sandbox.demo.tenant_id]
    assert [result.error for result in results if not result.ok] == []
    assert len(results) == 100
    assert seen.refused == []
    assert throttled == 0
    assert len(seen.admitted) == 100
    assert busiest(seen.admitted, 1.0) <= 10


async def test_call_quota_lower_than_configured_is_obeyed_after_its_429(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """A lower server quota: each 429 shuts its window, is counted and logged once."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(5, 1.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          limits:
            calls: ["10/1s"]
        """,
    )
    hunts = [make_hunt(f"mismatch-{index:02d}", "alpha") for index in range(20)]

    with structlog.testing.capture_logs() as logs:
        async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
            results = await runtime.run_once()
            throttled = runtime.limiter.for_tenant("alpha").throttled

    seen = tap.seen[sandbox.demo.tenant_id]
    throttle_logs = [entry for entry in logs if entry["event"] == "limiter.throttled"]
    assert all(result.ok for result in results)
    assert len(results) == 20
    assert seen.refused, "the sandbox's lower quota was never reached"
    assert throttled == len(seen.refused) == len(throttle_logs)
    assert {entry["kind"] for entry in throttle_logs} == {"calls"}
    assert {entry["window"] for entry in throttle_logs} == {"00:00:01"}
    assert arrivals_during_pauses(seen) == []
    # At most the calls in flight when the window filled are refused each time.
    assert len(seen.refused) <= 3 * len(seen.admitted) // 5 + 3


async def test_cpu_quota_pauses_one_tenant_while_another_runs(
    tmp_path: Path, sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU 429 pauses its tenant until Retry-After while another tenant runs."""
    sandbox = await sandbox_factory(
        QuotaSettings(
            calls=(CallLimit(1000, 1.0),),
            cpu=(CpuLimit(50.0, 2.0),),
            cpu_cycle_seconds=1.0,
        )
    )
    tap = QuotaTap(sandbox)
    beta_tenant, beta_client, beta_secret = (str(uuid.uuid4()) for _ in range(3))
    sandbox.register_client(
        ClientSettings(client_id=beta_client, tenant_id=beta_tenant, secret=beta_secret)
    )
    monkeypatch.setenv("BETA_SECRET", beta_secret)
    settings = write_config(
        tmp_path,
        f"""
        alpha:
          cloud: sandbox
        beta:
          cloud: sandbox
          tenant_id: {beta_tenant}
          client_id: {beta_client}
          secret_env: BETA_SECRET
        """,
    )
    # Another client has spent alpha's CPU budget, as the server sees it.
    sandbox.quotas.charge(sandbox.demo.tenant_id, 100.0)
    hunts = [make_hunt(f"alpha-{index}", "alpha") for index in range(6)]
    hunts += [make_hunt(f"beta-{index}", "beta") for index in range(12)]

    with structlog.testing.capture_logs() as logs:
        async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
            results = await runtime.run_once()
            alpha = runtime.limiter.for_tenant("alpha")
            beta = runtime.limiter.for_tenant("beta")

    alpha_seen = tap.seen[sandbox.demo.tenant_id]
    beta_seen = tap.seen[beta_tenant]
    assert all(result.ok for result in results)
    assert len(results) == 18
    assert alpha_seen.refused and beta_seen.refused == []
    assert {refusal.kind for _, refusal in alpha_seen.refused} == {"cpu"}
    assert alpha.throttled == len(alpha_seen.refused) and beta.throttled == 0
    assert {
        entry["kind"] for entry in logs if entry["event"] == "limiter.throttled"
    } == {"cpu"}
    first_refusal, refusal = alpha_seen.refused[0]
    pause_ends = first_refusal + refusal.retry_after
    assert arrivals_during_pauses(alpha_seen) == []
    assert min(alpha_seen.admitted) >= pause_ends - 0.01
    # Beta finished all its hunts while alpha was still paused.
    assert len(beta_seen.admitted) == 12
    assert max(beta_seen.admitted) < pause_ends


async def test_status_shows_quota_state_per_tenant(
    tmp_path: Path, sandbox_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hunt-runner status`` shows calls, CPU left, queue, waits, 429s per tenant."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(4, 1.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          limits:
            calls: ["6/1s", "100/1h"]
            cpu: ["10m/1h"]
        """,
    )
    hunts = [make_hunt(f"status-{index}", "alpha") for index in range(8)]

    async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
        results = await runtime.run_once()
    capsys.readouterr()

    assert cli.main(["status", "--config", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(result.ok for result in results)
    alpha = report["tenants"]["alpha"]
    calls, cpu = alpha["calls"], alpha["cpu"]
    assert [(window["count"], window["per_seconds"]) for window in calls] == [
        (6, 1.0),
        (100, 3600.0),
    ]
    assert calls[1]["used"] >= 8 and calls[1]["left"] == 100 - calls[1]["used"]
    assert cpu[0]["budget_s"] == 600 and 0 < cpu[0]["left_s"] < 600
    assert alpha["queue_depth"] == 0
    assert alpha["waits"] > 0 and alpha["wait_total_s"] > 0
    throttled = len(tap.seen[sandbox.demo.tenant_id].refused)
    assert alpha["throttled"] == throttled > 0
    assert {run["hunt"] for run in report["runs"]} == {h.id for h in hunts}

    # The same figures, for people.
    assert cli.main(["status", "--config", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("tenant alpha (as of ")
    assert shown[1].split() == [
        "calls",
        str(calls[0]["used"]),
        "of",
        "6",
        "per",
        "1s",
        f"{calls[0]['left']}",
        "left",
    ]
    assert f"{calls[1]['used']} of 100" in shown[2]
    assert shown[3].split()[2:6] == ["of", "600s", "per", "1h"]
    assert f"{throttled} 429s" in shown[4] and "0 waiting" in shown[4]


async def test_graph_hunt_is_charged_its_query_time_not_its_wait_after_a_429(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """On Graph a hunt that waited out a 429 is charged and remembered at query cost."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(1, 2.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          limits:
            calls: ["10/1s"]
        """,
    )
    hunts = [make_hunt(f"patient-{index}", "alpha") for index in range(2)]

    async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
        results = await runtime.run_once()
        costs = [runtime.state.cost(hunt.id, "alpha") for hunt in hunts]

    refused = tap.seen[sandbox.demo.tenant_id].refused
    assert all(result.ok for result in results)
    assert refused, "the sandbox's lower quota was never reached"
    # The retry waited over half a second for the window; the query took far less.
    assert refused[0][1].retry_after > 0.5
    assert all(cost is not None and cost < 0.5 for cost in costs), costs


def test_status_reads_a_snapshot_written_without_todays_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` shows "?" for fields an older daemon did not write, no traceback."""
    settings = write_config(tmp_path, "alpha:\n  cloud: sandbox\n")
    state = State(settings.state_path)
    state.put_tenant_status(
        "alpha",
        {
            "calls": [{"count": 45, "per_seconds": 60.0, "used": 3}],
            "cpu": [{"budget_s": 600, "per_seconds": 3600.0, "used_s": 12.0}],
            "queue_depth": 0,
        },
    )
    state.close()

    assert cli.main(["status", "--config", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[1].split() == ["calls", "3", "of", "45", "per", "1m", "?", "left"]
    assert shown[2].split() == ["cpu", "12s", "of", "600s", "per", "1h", "?", "left"]


def test_status_json_without_a_state_file_is_still_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --json`` before the daemon ever ran prints an empty JSON report."""
    write_config(tmp_path, "alpha:\n  cloud: sandbox\n")

    assert cli.main(["status", "--config", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()

    assert json.loads(captured.out) == {"tenants": {}, "runs": []}
    assert "no state file" in captured.err
    assert not (tmp_path / "state.db").exists()


async def test_two_entries_for_one_directory_share_its_quota(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """A Graph and an MDE entry for one directory draw from one call window."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(5, 1.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          backend: graph
          limits: {calls: ["5/1s"]}
        beta:
          cloud: sandbox
          backend: mde
          limits: {calls: ["5/1s"]}
        """,
    )
    hunts = [
        make_hunt(f"{tenant}-{index:02d}", tenant)
        for tenant in ("alpha", "beta")
        for index in range(15)
    ]

    with structlog.testing.capture_logs() as logs:
        async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
            results = await runtime.run_once()

    seen = tap.seen[sandbox.demo.tenant_id]
    assert [result.error for result in results if not result.ok] == []
    assert seen.refused == []
    assert len(seen.admitted) == 30
    assert busiest(seen.admitted, 1.0) <= 5
    (shared,) = [entry for entry in logs if entry["event"] == "tenant.quota_shared"]
    assert (shared["tenant"], shared["shares_with"]) == ("beta", "alpha")


async def test_a_restart_remembers_the_calls_already_made(
    tmp_path: Path, sandbox_factory: Any
) -> None:
    """A daemon started again within a window waits for it instead of a 429 burst."""
    sandbox = await sandbox_factory(
        QuotaSettings(calls=(CallLimit(5, 2.0),), cpu=ROOMY_CPU)
    )
    tap = QuotaTap(sandbox)
    settings = write_config(
        tmp_path,
        """
        alpha:
          cloud: sandbox
          limits: {calls: ["5/2s"]}
        """,
    )

    for run in range(2):
        hunts = [make_hunt(f"run{run}-{index}", "alpha") for index in range(5)]
        async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
            results = await runtime.run_once()
        assert [result.error for result in results if not result.ok] == []

    seen = tap.seen[sandbox.demo.tenant_id]
    assert seen.refused == []
    assert len(seen.admitted) == 10
    assert busiest(seen.admitted, 2.0) <= 5


async def test_status_names_every_entry_that_shares_a_quota(
    tmp_path: Path, sandbox_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` shows the second entry of a directory beside the first one."""
    sandbox = await sandbox_factory(QuotaSettings(calls=(CallLimit(45, 60.0),)))
    settings = write_config(
        tmp_path,
        """
        alpha: {cloud: sandbox, backend: graph}
        beta: {cloud: sandbox, backend: mde}
        """,
    )
    hunts = [make_hunt(f"{tenant}-hunt", tenant) for tenant in ("alpha", "beta")]
    async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
        await runtime.run_once()
    capsys.readouterr()

    assert cli.main(["status", "--config", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith("tenant alpha, shared with beta (as of ")
    assert shown[1].split()[:4] == ["calls", "2", "of", "45"]
    assert cli.main(["status", "--config", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tenants"]["alpha"]["shared_by"] == ["beta"]
