"""Quota use of hunt-runner's limiter against two client loops users write today.

    .venv/bin/python benchmarks/quota.py [--hunts 225] [--cpu-hunts 120]

Everything runs in one process against the in-process sandbox, over real
HTTPS with real msal tokens, with the quota windows compressed: the sandbox
and the runner get the very same limits, the runner's through
``Limits.time_scale``, the sandbox's as those scaled windows. Each contender
has a tenant of its own in the sandbox, so no contender inherits another's
calls or CPU, and the contenders run one after the other so that none slows
the sandbox for another.

Contenders, all through ``HuntingClient.query`` (the same HTTPS client path):

- ``hunt_runner``: the executor's path, ``TenantLimiter.acquire`` with the
  hunt's priority and expected CPU, ``permit.call`` before every attempt,
  ``on_throttled`` on a 429 and ``permit.charge`` with the cost;
- ``fire_and_retry``: every hunt at once behind a semaphore of 10; a 429 is
  slept out for its ``Retry-After`` (one scaled second without one), then
  retried;
- ``fixed_sleep``: one hunt after another with a fixed pause between calls,
  the naive 60/45 seconds (scaled), and the same 429 handling.

Two scenarios: ``call_bound`` (hundreds of cheap hunts due at once, so the
call windows bind) and ``cpu_bound`` (fewer hunts made expensive by the
sandbox's ``cost_factor`` on a legacy endpoint whose ``Stats`` report the CPU,
so the CPU budget binds). All hunts are due at the same instant; 10% of them
have priority 9, the rest priority 1, in a shuffled order.

Figures, all counted by the sandbox unless named otherwise:

- ``calls[].utilization`` (per call window of ``count`` per ``per_seconds``):
  how fast freed quota is used again, ``per_seconds`` divided by the mean time
  between an admitted call and the ``count``-th admitted call after it. A
  client that sends each call the instant the sliding window allows scores
  1.0; one that leaves slots idle scores less; it cannot exceed 1.0 without
  429s. Left out when the run made no more than ``count`` calls (a window
  longer than the run), as are the other figures such a window cannot give.
- ``calls[].window_utilization``: the calls admitted in each full window of
  that length laid end to end from the first admitted call (``per_window``),
  summed and divided by their allowance; the last, partial window is left
  out. Coarser than ``utilization``: a window that starts with a burst counts
  full even when its slots were reused late. ``busiest``: the most calls
  admitted in any sliding window of that length.
- ``cpu[].utilization``: the CPU the sandbox charged in each full CPU window
  laid end to end from the first admitted call, divided by the budget of
  those windows. It can exceed 1.0: the sandbox, like the service, admits a
  call while the budget is not yet spent and charges it when it ends.
- ``throttled``: 429s the sandbox answered; ``throttled_by_kind`` splits them.
- ``wait_s``: per priority, p50 and p99 of the time from the instant every
  hunt was due to the sending of the attempt that succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import random
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner import clouds  # noqa: E402
from runner.auth import ClientCredential, TokenProvider  # noqa: E402
from runner.client import HuntingClient, ssl_context  # noqa: E402
from runner.clock import SystemClock  # noqa: E402
from runner.config import Limits  # noqa: E402
from runner.errors import HuntRunnerError, ThrottledError  # noqa: E402
from runner.executor import DEFAULT_EXPECTED_CPU  # noqa: E402
from runner.limiter import Limiter, update_average  # noqa: E402
from runner.sandbox import (  # noqa: E402
    CallLimit,
    ClientSettings,
    CpuLimit,
    QuotaSettings,
    Sandbox,
    SandboxSettings,
)
from runner.sandbox.quotas import QuotaRefusal  # noqa: E402
from runner.secrets import Secret  # noqa: E402

HIGH, LOW = 9, 1
CHEAP_QUERY = "DeviceInfo | take 1"
# Query shapes of the CPU-bound scenario: dearer than a lookup, and unequal,
# so the expected costs the limiter learns differ from hunt to hunt.
EXPENSIVE_QUERIES = (
    "DeviceProcessEvents | summarize count() by DeviceName",
    "DeviceNetworkEvents | summarize count() by RemotePort | top 10 by count_",
    "DeviceLogonEvents | summarize count() by AccountName, LogonType",
    "DeviceFileEvents | where FileName endswith '.exe' | count",
    "DeviceInfo | summarize arg_max(Timestamp, *) by DeviceId | count",
)
# A contender still busy after this long is stopped; its hunts left are
# reported as unfinished rather than holding the whole benchmark.
CONTENDER_DEADLINE_S = 120.0


# -- what the sandbox saw ------------------------------------------------------


@dataclass
class TenantTrace:
    """One tenant's admitted calls, refusals and CPU charges, in sandbox time."""

    admitted: list[float] = field(default_factory=list)
    refused: list[tuple[float, str]] = field(default_factory=list)
    charged: list[tuple[float, float]] = field(default_factory=list)


class QuotaTap:
    """Records every quota decision the sandbox makes, per tenant.

    It wraps the sandbox's own ``admit`` and ``charge`` and changes nothing
    they decide: the figures are the server's count, not the client's.
    """

    def __init__(self, sandbox: Sandbox) -> None:
        self.traces: dict[str, TenantTrace] = defaultdict(TenantTrace)
        quotas = sandbox.quotas
        admit, charge = quotas.admit, quotas.charge

        def admit_and_record(tenant: str) -> QuotaRefusal | None:
            refusal = admit(tenant)
            if refusal is None:
                # The instant the sandbox counted, not a later reading of its
                # clock, so that windows here match the server's to the tick.
                self.traces[tenant].admitted.append(quotas._calls[tenant][-1])
            else:
                self.traces[tenant].refused.append((quotas.clock.time(), refusal.kind))

            return refusal

        def charge_and_record(tenant: str, cpu_seconds: float) -> None:
            charge(tenant, cpu_seconds)
            self.traces[tenant].charged.append((quotas.clock.time(), cpu_seconds))

        quotas.admit = admit_and_record  # type: ignore[method-assign]
        quotas.charge = charge_and_record  # type: ignore[method-assign]


def sandbox_quotas(limits: Limits) -> QuotaSettings:
    """The sandbox's quotas for a runner configured with *limits*: the same windows."""
    scaled = limits.scaled()

    return QuotaSettings(
        calls=tuple(CallLimit(rate.count, rate.per_seconds) for rate in scaled.calls),
        cpu=tuple(CpuLimit(float(rate.count), rate.per_seconds) for rate in scaled.cpu),
        cpu_cycle_seconds=scaled.cpu_block_boundary,
    )


# -- hunts and their outcomes --------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One hunt due at the start: its name, priority and query."""

    hunt: str
    priority: int
    query: str


@dataclass
class Outcome:
    """How one hunt went: when its successful attempt was sent, and 429s seen."""

    job: Job
    sent_at: float | None = None
    attempts: int = 0
    throttled: int = 0
    error: str | None = None


def make_jobs(count: int, queries: Sequence[str], seed: int) -> list[Job]:
    """*count* hunts, a tenth of them high priority, in a shuffled order."""
    high = max(1, round(count / 10))
    jobs = [
        Job(
            hunt=f"hunt-{index:04d}",
            priority=HIGH if index < high else LOW,
            query=queries[index % len(queries)],
        )
        for index in range(count)
    ]
    random.Random(seed).shuffle(jobs)

    return jobs


# -- a tenant in the sandbox for each contender -----------------------------------


@dataclass
class Tenant:
    """A freshly registered sandbox tenant and a client for it."""

    tenant_id: str
    client: HuntingClient
    tokens: TokenProvider


def register_tenant(
    sandbox: Sandbox,
    http: aiohttp.ClientSession,
    *,
    name: str,
    backend: str,
    max_retries: int,
) -> Tenant:
    """Register an application in a new tenant and build the runner's client for it."""
    tenant_id, client_id, secret = (str(uuid.uuid4()) for _ in range(3))
    sandbox.register_client(
        ClientSettings(client_id=client_id, tenant_id=tenant_id, secret=secret)
    )
    endpoints = clouds.resolve(
        "sandbox", backend, tenant_id, sandbox_base=sandbox.base_url
    )
    tokens = TokenProvider(
        name,
        client_id=client_id,
        credential=ClientCredential(secret=Secret(secret, f"{name} secret")),
        authority=endpoints.authority,
        scope=endpoints.scope,
        verify=str(sandbox.ca_path),
    )
    client = HuntingClient(
        name,
        endpoints=endpoints,
        tokens=tokens,
        session=http,
        ssl=ssl_context(str(sandbox.ca_path)),
        max_retries=max_retries,
    )

    return Tenant(tenant_id, client, tokens)


# -- the contenders --------------------------------------------------------------


async def hunt_runner(
    tenant: Tenant,
    outcomes: Sequence[Outcome],
    limits: Limits,
    expected_cpu: dict[str, float],
) -> dict[str, Any]:
    """Every hunt through the limiter, as ``Executor`` runs it."""
    limiter = Limiter(SystemClock())
    tenant_limiter = limiter.add("hunt_runner", limits)

    async def run(outcome: Outcome) -> None:
        job = outcome.job
        expected = expected_cpu.get(job.query, DEFAULT_EXPECTED_CPU)
        async with tenant_limiter.acquire(
            hunt=job.hunt, priority=job.priority, expected_cpu=expected
        ) as permit:

            async def before_call() -> None:
                await permit.call()
                outcome.attempts += 1
                outcome.sent_at = time.time()

            def on_throttled(error: ThrottledError) -> None:
                outcome.throttled += 1
                tenant_limiter.on_throttled(error)

            try:
                result = await tenant.client.query(
                    job.query,
                    hunt=job.hunt,
                    before_call=before_call,
                    on_throttled=on_throttled,
                )
            except HuntRunnerError as error:
                outcome.error = str(error)
                return
            cpu = result.result.cpu_seconds
            permit.charge(result.elapsed if cpu is None else cpu)

    try:
        await asyncio.gather(*(run(outcome) for outcome in outcomes))
    finally:
        snapshot = tenant_limiter.snapshot()
        await limiter.aclose()

    return {"client_throttled": snapshot["throttled"]}


async def attempt_until_done(
    tenant: Tenant, outcome: Outcome, pause_without_header: float
) -> None:
    """Send *outcome*'s hunt until it succeeds, sleeping out each 429."""
    while True:
        outcome.attempts += 1
        sent_at = time.time()
        try:
            await tenant.client.query(outcome.job.query, hunt=outcome.job.hunt)
        except ThrottledError as error:
            outcome.throttled += 1
            retry_after = error.retry_after
            await asyncio.sleep(
                pause_without_header if retry_after is None else retry_after
            )
            continue
        except HuntRunnerError as error:
            outcome.error = str(error)
            return
        outcome.sent_at = sent_at
        return


async def fire_and_retry(
    tenant: Tenant, outcomes: Sequence[Outcome], time_scale: float
) -> dict[str, Any]:
    """Every hunt at once, ten in flight, each 429 slept out and retried."""
    gate = asyncio.Semaphore(10)

    async def run(outcome: Outcome) -> None:
        async with gate:
            await attempt_until_done(tenant, outcome, 1.0 / time_scale)

    await asyncio.gather(*(run(outcome) for outcome in outcomes))

    return {"concurrency": 10}


async def fixed_sleep(
    tenant: Tenant, outcomes: Sequence[Outcome], time_scale: float
) -> dict[str, Any]:
    """One hunt after another with the naive 60/45 s pause between calls."""
    pause = 60.0 / 45.0 / time_scale
    for index, outcome in enumerate(outcomes):
        if index:
            await asyncio.sleep(pause)
        await attempt_until_done(tenant, outcome, 1.0 / time_scale)

    return {"pause_s": round(pause, 4)}


# -- scenarios ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A workload and the quota it runs against."""

    name: str
    backend: str
    limits: Limits
    hunts: int
    queries: tuple[str, ...]
    cost_factor: float = 1.0
    learn_costs: bool = False


async def run_scenario(scenario: Scenario, seed: int) -> dict[str, Any]:
    """Start a sandbox for *scenario* and run each contender on its own tenant."""
    quotas = sandbox_quotas(scenario.limits)
    settings = SandboxSettings(
        days=1,
        events_per_hour=1200,
        live_arrival=False,
        quotas=quotas,
        cost_factor=scenario.cost_factor,
    )
    jobs = make_jobs(scenario.hunts, scenario.queries, seed)
    scale = scenario.limits.time_scale
    report: dict[str, Any] = {
        "backend": scenario.backend,
        "time_scale": scale,
        "hunts": len(jobs),
        "high_priority_hunts": sum(1 for job in jobs if job.priority == HIGH),
        "queries": sorted(set(scenario.queries)),
        "cost_factor": scenario.cost_factor,
        "limits": {
            "calls": [
                {"count": c.calls, "per_seconds": c.window_seconds}
                for c in quotas.calls
            ],
            "cpu": [
                {"budget_s": c.cpu_seconds, "per_seconds": c.window_seconds}
                for c in quotas.cpu
            ],
            "cpu_cycle_seconds": quotas.cpu_cycle_seconds,
            "max_concurrent": scenario.limits.max_concurrent,
        },
    }

    async with Sandbox(settings) as sandbox, aiohttp.ClientSession() as http:
        tap = QuotaTap(sandbox)
        expected_cpu: dict[str, float] = {}
        if scenario.learn_costs:
            expected_cpu = await learn_costs(sandbox, http, scenario)
            report["expected_cpu_s"] = {
                query: round(cost, 2) for query, cost in expected_cpu.items()
            }

        contenders: dict[str, Callable[[Tenant, list[Outcome]], Awaitable[Any]]] = {
            "hunt_runner": lambda tenant, outcomes: hunt_runner(
                tenant, outcomes, scenario.limits, expected_cpu
            ),
            "fire_and_retry": lambda tenant, outcomes: fire_and_retry(
                tenant, outcomes, scale
            ),
            "fixed_sleep": lambda tenant, outcomes: fixed_sleep(
                tenant, outcomes, scale
            ),
        }
        for name, contender in contenders.items():
            tenant = register_tenant(
                sandbox,
                http,
                name=name,
                backend=scenario.backend,
                # The baselines see every 429 themselves; the runner keeps
                # the client's own bounded retries.
                max_retries=scenario.limits.max_retries if name == "hunt_runner" else 0,
            )
            try:
                # The first token is fetched before the clock starts, for all.
                await tenant.tokens.token()
                outcomes = [Outcome(job) for job in jobs]
                due = time.time()
                started = time.perf_counter()
                extra: dict[str, Any] = {}
                try:
                    extra = await asyncio.wait_for(
                        contender(tenant, outcomes), CONTENDER_DEADLINE_S
                    )
                except TimeoutError:
                    extra = {"stopped_after_s": CONTENDER_DEADLINE_S}
                elapsed = time.perf_counter() - started
            finally:
                tenant.tokens.close()
            report[name] = (
                summarise(tap.traces[tenant.tenant_id], outcomes, due, elapsed, quotas)
                | extra
            )

    return report


async def learn_costs(
    sandbox: Sandbox, http: aiohttp.ClientSession, scenario: Scenario
) -> dict[str, float]:
    """Each query's moving-average CPU, as the state file holds it after a few runs.

    Runs on a tenant of its own, so the contenders start with empty quotas.
    """
    tenant = register_tenant(
        sandbox, http, name="learning", backend=scenario.backend, max_retries=0
    )
    costs: dict[str, float] = {}
    try:
        for query in dict.fromkeys(scenario.queries):
            average: float | None = None
            for _ in range(3):
                while True:
                    try:
                        outcome = await tenant.client.query(query)
                        break
                    except ThrottledError as error:
                        await asyncio.sleep(error.retry_after or 1.0)
                cpu = outcome.result.cpu_seconds
                average = update_average(
                    average, outcome.elapsed if cpu is None else cpu
                )
            assert average is not None
            costs[query] = average
    finally:
        tenant.tokens.close()

    return costs


async def measure_capacity(seconds: float = 3.0, concurrency: int = 3) -> float:
    """Cheap queries per second the sandbox serves with no quota in the way."""
    roomy = QuotaSettings(
        calls=(CallLimit(1_000_000, 60.0),), cpu=(CpuLimit(1e9, 3600.0),)
    )
    settings = SandboxSettings(
        days=1, events_per_hour=1200, live_arrival=False, quotas=roomy
    )
    async with Sandbox(settings) as sandbox, aiohttp.ClientSession() as http:
        tenant = register_tenant(
            sandbox, http, name="capacity", backend="graph", max_retries=0
        )
        try:
            await tenant.client.query(CHEAP_QUERY)
            done = 0
            stop_at = time.perf_counter() + seconds
            started = time.perf_counter()

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop_at:
                    await tenant.client.query(CHEAP_QUERY)
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        finally:
            tenant.tokens.close()

    return done / elapsed


# -- figures -----------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of *values*; ``None`` for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)

    return ordered[rank - 1]


def slot_reuse(admitted: Sequence[float], count: int, span: float) -> float | None:
    """``span`` over the mean time between a call and the *count*-th call after it.

    A client that sends each call the moment the sliding window lets it
    reuses every slot exactly *span* after its last use: 1.0. ``None`` when
    the run made no more than *count* calls.
    """
    ordered = sorted(admitted)
    gaps = [ordered[i] - ordered[i - count] for i in range(count, len(ordered))]
    if not gaps:
        return None

    return span / (sum(gaps) / len(gaps))


def window_use(
    events: Sequence[tuple[float, float]],
    start: float,
    end: float,
    span: float,
    allowance: float,
) -> dict[str, Any]:
    """Use of consecutive windows of *span* from *start*, and the busiest sliding one.

    *events* are ``(time, amount)``; only windows ending by *end* count.
    """
    full = int((end - start) // span) if end > start else 0
    per_window = [0.0] * full
    for at, amount in events:
        index = int((at - start) // span)
        if 0 <= index < full:
            per_window[index] += amount
    busiest = 0.0
    ordered = sorted(events)
    total = 0.0
    first = 0
    for at, amount in ordered:
        total += amount
        while ordered[first][0] <= at - span:
            total -= ordered[first][1]
            first += 1
        busiest = max(busiest, total)

    return {
        "full_windows": full,
        # Short windows of a long run would flood the report.
        "per_window": ([round(used, 2) for used in per_window] if full <= 30 else None),
        "utilization": (
            round(sum(per_window) / (full * allowance), 4) if full else None
        ),
        "busiest": round(busiest, 2),
    }


def summarise(
    trace: TenantTrace,
    outcomes: Sequence[Outcome],
    due: float,
    elapsed: float,
    quotas: QuotaSettings,
) -> dict[str, Any]:
    """The figures of one contender in one scenario."""
    admitted = [(at, 1.0) for at in trace.admitted]
    start = trace.admitted[0] if trace.admitted else due
    last_call = trace.admitted[-1] if trace.admitted else due
    kinds: dict[str, int] = defaultdict(int)
    for _, kind in trace.refused:
        kinds[kind] += 1
    calls = []
    for limit in quotas.calls:
        use = window_use(admitted, start, last_call, limit.window_seconds, limit.calls)
        reuse = slot_reuse(trace.admitted, limit.calls, limit.window_seconds)
        calls.append(
            {"count": limit.calls, "per_seconds": limit.window_seconds}
            | use
            | {
                "window_utilization": use["utilization"],
                "utilization": None if reuse is None else round(reuse, 4),
            }
        )
    cpu = [
        {"budget_s": limit.cpu_seconds, "per_seconds": limit.window_seconds}
        | window_use(
            trace.charged, start, last_call, limit.window_seconds, limit.cpu_seconds
        )
        for limit in quotas.cpu
    ]
    waits: dict[str, Any] = {}
    for label, priority in (("high", HIGH), ("low", LOW)):
        done = [
            outcome.sent_at - due
            for outcome in outcomes
            if outcome.job.priority == priority and outcome.sent_at is not None
        ]
        p50, p99 = percentile(done, 0.5), percentile(done, 0.99)
        waits[label] = {
            "p50": None if p50 is None else round(p50, 3),
            "p99": None if p99 is None else round(p99, 3),
        }

    return {
        "elapsed_s": round(elapsed, 2),
        "completed": sum(1 for o in outcomes if o.sent_at is not None),
        "failed": sum(1 for o in outcomes if o.error is not None),
        "unfinished": sum(1 for o in outcomes if o.sent_at is None and o.error is None),
        "calls_admitted": len(trace.admitted),
        "throttled": len(trace.refused),
        "throttled_by_kind": dict(kinds),
        "cpu_charged_s": round(sum(cpu for _, cpu in trace.charged), 2),
        "calls": [_filled(window) for window in calls],
        "cpu": [_filled(window) for window in cpu],
        "wait_s": waits,
    }


def _filled(window: dict[str, Any]) -> dict[str, Any]:
    """*window* without the figures a run too short for it could not give."""
    return {key: value for key, value in window.items() if value not in (None, [])}


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """The targets of the quota work, checked against hunt-runner's figures."""
    call_run = report["call_bound"]["hunt_runner"]
    cpu_run = report["cpu_bound"]["hunt_runner"]
    call_use = [w["utilization"] for w in call_run["calls"] if "utilization" in w]
    cpu_use = [w["utilization"] for w in cpu_run["cpu"] if "utilization" in w]

    def priority_order(run: dict[str, Any]) -> bool:
        high, low = run["wait_s"]["high"]["p99"], run["wait_s"]["low"]["p50"]
        return high is not None and low is not None and high < low

    # The binding window is the one used the most; a longer one may have no
    # full window in the run and is not judged.
    return {
        "call_bound_utilization": max(call_use, default=None),
        "call_bound_ok": bool(call_use)
        and max(call_use) >= 0.97
        and call_run["throttled"] == 0,
        "cpu_bound_utilization": max(cpu_use, default=None),
        "cpu_bound_ok": bool(cpu_use)
        and max(cpu_use) >= 0.90
        and cpu_run["throttled"] == 0,
        "high_p99_below_low_p50": priority_order(call_run) and priority_order(cpu_run),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    capacity = await measure_capacity()
    call_bound = Scenario(
        name="call_bound",
        backend="graph",
        limits=Limits(time_scale=args.call_scale),
        hunts=args.hunts,
        queries=(CHEAP_QUERY,),
    )
    scaled_calls = call_bound.limits.scaled().calls
    # The shortest window sets the pace of a burst, which the sandbox must serve.
    call_rate = max(rate.count / rate.per_seconds for rate in scaled_calls)
    cpu_bound = Scenario(
        name="cpu_bound",
        backend=args.cpu_backend,
        limits=Limits(time_scale=args.cpu_scale),
        hunts=args.cpu_hunts,
        queries=EXPENSIVE_QUERIES,
        cost_factor=args.cost_factor,
        learn_costs=True,
    )
    report: dict[str, Any] = {
        "benchmark": "quota",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sandbox_capacity_qps": round(capacity, 1),
        "call_bound_quota_qps": round(call_rate, 2),
    }
    report["call_bound"] = await run_scenario(call_bound, args.seed)
    report["cpu_bound"] = await run_scenario(cpu_bound, args.seed)
    report["targets"] = verdicts(report)
    report["total_s"] = round(time.perf_counter() - started, 1)

    return report


def render(value: Any, indent: int = 0) -> str:
    """JSON with one level per line, and any part that fits on one line kept on one."""
    flat = json.dumps(value)
    if len(flat) + indent <= 150 or not isinstance(value, dict | list) or not value:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(key)}: {render(item, indent + 2)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [inner + render(item, indent + 2) for item in value]

    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hunts", type=int, default=225)
    parser.add_argument("--cpu-hunts", type=int, default=360)
    parser.add_argument(
        "--call-scale",
        type=float,
        default=10.0,
        help="time compression of the call-bound scenario (10: 45 calls per 6 s)",
    )
    parser.add_argument(
        "--cpu-scale",
        type=float,
        default=720.0,
        help="time compression of the CPU-bound scenario (720: 600 CPU-s per 5 s)",
    )
    parser.add_argument("--cost-factor", type=float, default=250.0)
    parser.add_argument("--cpu-backend", choices=("mde", "xdr"), default="mde")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    # Logs go to stderr at warning so stdout carries the JSON alone.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    report = asyncio.run(main_async(args))
    print(render(report))


if __name__ == "__main__":
    main()
