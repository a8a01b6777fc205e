"""The ``hunt-runner`` command: argument parsing and wiring, no logic of its own."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from runner import __version__, logs
from runner.errors import ConfigError, HuntRunnerError, Problem

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

# The folders every command reads, unless --config and --jobs say otherwise;
# a container image sets the variables so that `docker exec ... status` works.
DEFAULT_CONFIG = Path(os.environ.get("HUNT_RUNNER_CONFIG", "config"))
DEFAULT_JOBS = Path(os.environ.get("HUNT_RUNNER_JOBS", "jobs"))

log = structlog.get_logger("runner.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hunt-runner",
        description="Run Microsoft Defender advanced hunting queries on a schedule.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    def folders(command: argparse.ArgumentParser) -> None:
        config_option(command)
        command.add_argument(
            "--jobs",
            default=[],
            action="append",
            type=Path,
            help="hunt file or folder (repeatable; default: $HUNT_RUNNER_JOBS or jobs)",
        )

    def config_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--config",
            default=DEFAULT_CONFIG,
            type=Path,
            help="configuration folder (default: $HUNT_RUNNER_CONFIG or config)",
        )

    run = commands.add_parser("run", help="run the daemon (or every hunt once)")
    folders(run)
    run.add_argument(
        "--once", action="store_true", help="run every enabled hunt once, then exit"
    )

    validate = commands.add_parser(
        "validate", help="check configuration and hunts offline"
    )
    validate.add_argument("paths", nargs="*", type=Path, help="hunt files or folders")
    config_option(validate)

    query = commands.add_parser("query", help="run one ad-hoc KQL query")
    folders(query)
    query.add_argument("kql", help="the query text")
    query.add_argument("--tenant", help="tenant name (default: the first)")
    query.add_argument(
        "--lookback",
        default="1d",
        type=_duration_argument,
        help="window to query (e.g. 1d)",
    )
    query.add_argument("--json", action="store_true", help="print rows as JSON lines")

    listing = commands.add_parser("list", help="hunts, schedules and next runs")
    folders(listing)

    status = commands.add_parser(
        "status", help="quota and run status from the state file"
    )
    config_option(status)
    status.add_argument("--json", action="store_true")

    health = commands.add_parser("health", help="exit 0 if the daemon is alive")
    config_option(health)
    health.add_argument(
        "--max-age",
        default=120.0,
        type=float,
        help="seconds since the daemon last wrote its status",
    )

    sandbox = commands.add_parser("sandbox", help="serve the emulated Defender API")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", default=0, type=int, help="0 picks a free port")
    sandbox.add_argument(
        "--ca-out", default=None, type=Path, help="where to write the CA"
    )
    sandbox.add_argument(
        "--config",
        default=None,
        type=Path,
        help="configuration folder whose sandbox: section to use",
    )

    return parser


def _duration_argument(text: str) -> timedelta:
    from runner.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure("info")
    handler = {
        "run": _run,
        "validate": _validate,
        "query": _query,
        "list": _list,
        "status": _status,
        "health": _health,
        "sandbox": _sandbox,
    }[args.command]
    try:
        return handler(args)
    except ConfigError as error:
        _print_problems(error.problems)
        return EXIT_CONFIG
    except HuntRunnerError as error:
        # A state file that cannot be read, say: a message, not a traceback.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (``status | head``): stop quietly, and point
        # stdout at /dev/null so the interpreter's final flush does not fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)


def _load_settings(args: argparse.Namespace, *, secrets: bool = True) -> Any:
    """The configuration, or ``ConfigError`` with every problem found.

    Without *secrets* (commands that call no API), secrets that cannot be
    read are left out instead of being problems.
    """
    from runner.config import load_config
    from runner.validate import sink_problems

    settings, problems = load_config(args.config, secrets=secrets)
    if settings is not None:
        problems += sink_problems(settings)
    if settings is None or problems:
        raise ConfigError(problems)
    logs.configure(settings.log_level, json=_json_logs(settings.log_format))
    for warning in settings.warnings:
        _log_problem(log.warning, "config.warning", warning)

    return settings


def _load(
    args: argparse.Namespace, *, secrets: bool = True
) -> tuple[Any, list[Any], int]:
    """Settings, the hunts that loaded, and how many problems the others had.

    Each problem is logged as one ``config.problem`` event naming file and
    line; the hunts without problems still load and run. A hunt naming a
    tenant or sink the configuration lacks is left out, like a broken file.
    """
    from runner.hunts import load_hunts
    from runner.validate import reference_problems

    settings = _load_settings(args, secrets=secrets)
    hunts, problems = load_hunts(args.jobs or [DEFAULT_JOBS], settings.hunt_defaults)
    unknown = reference_problems(hunts, settings)
    broken = {problem.path for problem in unknown}
    hunts = [hunt for hunt in hunts if hunt.source not in broken]
    problems += unknown
    for problem in problems:
        _log_problem(log.error, "config.problem", problem)

    return settings, hunts, len(problems)


def _log_problem(emit: Any, event: str, problem: Problem) -> None:
    """One event for *problem*, naming its file and line."""
    emit(
        event,
        file=problem.path,
        line=problem.line,
        problem=problem.message,
        where=str(problem),
    )


def _json_logs(log_format: str) -> bool | None:
    return {"json": True, "console": False}.get(log_format)


def _run(args: argparse.Namespace) -> int:
    from runner.daemon import Runtime, install_stop_signals

    settings, hunts, problems = _load(args)
    enabled = [hunt for hunt in hunts if hunt.enabled]
    if not enabled:
        log.error("config.no_hunts", jobs=[str(p) for p in args.jobs or [DEFAULT_JOBS]])
        return EXIT_CONFIG

    async def once() -> int:
        # SIGINT or SIGTERM stops the runs; what they committed stays (rows not
        # delivered yet wait in the outbox), the rest is covered next time. The
        # exit status must not claim that every hunt ran.
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, main.cancel)
        try:
            async with Runtime(settings, hunts) as runtime:
                results = await runtime.run_once()
        except asyncio.CancelledError:
            log.warning(
                "run.interrupted",
                note="runs not finished are covered by the next run's window",
            )
            return EXIT_FAILED
        failed = [r for r in results if not r.ok]
        log.info(
            "run.finished",
            runs=len(results),
            succeeded=len(results) - len(failed),
            failed=len(failed),
            rows=sum(r.rows for r in results),
        )

        if problems:
            return EXIT_CONFIG

        return EXIT_FAILED if failed else EXIT_OK

    async def forever() -> int:
        stop = asyncio.Event()
        install_stop_signals(stop)
        async with Runtime(settings, hunts) as runtime:
            await runtime.run_forever(stop)

        return EXIT_OK

    try:
        return asyncio.run(once() if args.once else forever())
    except ConfigError:
        raise
    except HuntRunnerError as error:
        log.error("run.aborted", error=str(error))
        return EXIT_FAILED


def _validate(args: argparse.Namespace) -> int:
    from runner.validate import validate_paths

    paths = args.paths or [DEFAULT_JOBS]
    config: Path | None = args.config
    if args.paths and config == DEFAULT_CONFIG and not config.exists():
        # Hunt files checked on their own, away from any configuration: the
        # names of tenants and sinks they use cannot be checked.
        print(
            f"note: no configuration folder {config}; tenant and sink names "
            "in the hunts are not checked (give --config)",
            file=sys.stderr,
        )
        config = None
    # Files checked on their own must still not take an id the jobs folder uses.
    neighbours = [DEFAULT_JOBS] if args.paths and DEFAULT_JOBS.is_dir() else []
    problems = validate_paths(paths, config, neighbours=neighbours)
    _print_problems(problems)
    failures = [problem for problem in problems if not problem.warning]
    summary = f"{len(failures)} problem(s)" if failures else "no problems"
    if len(problems) > len(failures):
        summary += f", {len(problems) - len(failures)} warning(s)"
    print(summary, file=sys.stderr)

    return EXIT_FAILED if failures else EXIT_OK


def _query(args: argparse.Namespace) -> int:
    from runner.client import timespan
    from runner.daemon import Runtime
    from runner.schedule import Window, query_prelude

    settings = _load_settings(args)
    tenant = args.tenant or settings.tenants[0].name
    lookback = args.lookback

    async def ask() -> Any:
        async with Runtime(settings, []) as runtime:
            if tenant not in runtime.clients:
                raise ConfigError(
                    [Problem(str(args.config), 0, f"no tenant {tenant!r}")]
                )
            end = datetime.now(UTC)
            start = end - lookback
            prelude = query_prelude(Window(start, end))
            return await runtime.clients[tenant].query(
                prelude + args.kql, timespan=timespan(start, end)
            )

    try:
        outcome = asyncio.run(ask())
    except HuntRunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    result = outcome.result
    if args.json:
        for row in result.rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        _print_table([c.name for c in result.columns], result.rows)
    print(f"{len(result.rows)} row(s)", file=sys.stderr)

    return EXIT_OK


def _print_table(columns: Sequence[str], rows: Sequence[Any]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [
        min(60, max([len(c)] + [len(line[i]) for line in cells]))
        for i, c in enumerate(columns)
    ]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(v[:w].ljust(w) for v, w in zip(line, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)

    return str(value)


def _list(args: argparse.Namespace) -> int:
    from runner.durations import format_duration
    from runner.schedule import trigger_for
    from runner.state import State

    settings, hunts, _ = _load(args, secrets=False)
    state = State(settings.state_path) if settings.state_path.exists() else None
    now = datetime.now(UTC)
    print(f"{'hunt':40} {'schedule':22} {'severity':9} {'next run (UTC)':20} watermark")
    for hunt in hunts:
        schedule = hunt.schedule.cron or f"every {format_duration(hunt.schedule.every)}"
        next_run = trigger_for(hunt).get_next_fire_time(None, now)
        marks = []
        if state is not None:
            for (hunt_id, tenant), mark in state.watermarks().items():
                if hunt_id == hunt.id:
                    marks.append(f"{tenant}={mark:%Y-%m-%d %H:%M:%S}")
        shown = "disabled" if not hunt.enabled else f"{next_run:%Y-%m-%d %H:%M:%S}"
        print(
            f"{hunt.id[:40]:40} {schedule[:22]:22} {hunt.severity:9} {shown:20} "
            f"{', '.join(marks) or '-'}"
        )
    print(
        "A daemon starting now runs every enabled hunt at once, then at these times.",
        file=sys.stderr,
    )

    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.state import State

    settings, problems = load_config(args.config, secrets=False)
    if settings is None:
        raise ConfigError(problems)
    if not settings.state_path.exists():
        message = f"no state file at {settings.state_path}: the daemon has not run yet"
        if args.json:
            # Scripts read stdout as JSON: an empty report, the reason aside.
            print(message, file=sys.stderr)
            print(json.dumps({"tenants": {}, "runs": []}, indent=2))
        else:
            print(message)
        return EXIT_OK
    state = State(settings.state_path)
    report = {"tenants": state.tenant_status(), "runs": state.last_runs()}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_OK
    for tenant, snapshot in sorted(report["tenants"].items()):
        for line in _tenant_lines(tenant, snapshot):
            print(line)
    print()
    print(f"{'hunt':40} {'tenant':12} {'status':7} {'rows':>6} window end")
    for run in report["runs"]:
        print(
            f"{run['hunt'][:40]:40} {run['tenant'][:12]:12} {run['status']:7} "
            f"{run['rows']:>6} {run['window_end']}"
        )

    return EXIT_OK


def _tenant_lines(tenant: str, snapshot: dict[str, Any]) -> list[str]:
    """A tenant's limiter snapshot as a few readable lines for ``status``."""
    from runner.durations import format_duration

    def instant(epoch: float | None) -> str:
        return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M:%S}Z"

    # A snapshot written by another version may lack a field: show "?".
    def number(level: dict[str, Any], key: str, unit: str = "") -> str:
        value = level.get(key)
        if isinstance(value, int | float):
            return f"{value:.0f}{unit}"
        return "?"

    def per(level: dict[str, Any]) -> str:
        seconds = level.get("per_seconds")
        if isinstance(seconds, int | float):
            return format_duration(timedelta(seconds=seconds))
        return "?"

    shared = ", ".join(str(name) for name in snapshot.get("shared_by", []))
    heading = f"tenant {tenant}, shared with {shared}" if shared else f"tenant {tenant}"
    lines = [f"{heading} (as of {snapshot.get('updated_at')})"]
    for level in snapshot.get("calls", []):
        used, count = number(level, "used"), number(level, "count")
        text = (
            f"  calls  {used:>6} of {count:<6} per {per(level):<5}"
            f" {number(level, 'left')} left"
        )
        if level.get("blocked_until"):
            text += f", closed by a 429 until {instant(level['blocked_until'])}"
        lines.append(text)
    for level in snapshot.get("cpu", []):
        used, budget = number(level, "used_s", "s"), number(level, "budget_s", "s")
        left = number(level, "left_s", "s")
        text = f"  cpu    {used:>6} of {budget:<6} per {per(level):<5} {left} left"
        if level.get("reserved_s"):
            text += f" ({level['reserved_s']:.0f}s reserved by running queries)"
        lines.append(text)
    lines.append(
        f"  queue  {snapshot.get('queue_depth', 0)} waiting, "
        f"{snapshot.get('running', 0)} running; "
        f"{snapshot.get('waits', 0)} waits ({snapshot.get('wait_total_s', 0)}s), "
        f"{snapshot.get('throttled', 0)} 429s"
    )
    if snapshot.get("paused_until"):
        lines.append(f"  paused after a 429 until {instant(snapshot['paused_until'])}")

    return lines


def _health(args: argparse.Namespace) -> int:
    from runner.config import load_config
    from runner.state import State, in_use

    settings, problems = load_config(args.config, secrets=False)
    if settings is None:
        # A health check answers 0 or 1 only: Docker reserves 2.
        _print_problems(problems)
        print("unhealthy: the configuration has problems", file=sys.stderr)
        return EXIT_FAILED
    if not settings.state_path.exists():
        print("unhealthy: no state file yet", file=sys.stderr)
        return EXIT_FAILED
    statuses = State(settings.state_path).tenant_status()
    if not in_use(settings.state_path):
        print(
            "unhealthy: no hunt-runner is running on this state file", file=sys.stderr
        )
        return EXIT_FAILED
    now = datetime.now(UTC)
    ages = [
        (now - datetime.fromisoformat(s["updated_at"])).total_seconds()
        for s in statuses.values()
    ]
    if not ages or min(ages) > args.max_age:
        print(
            "unhealthy: the daemon has not written its status recently", file=sys.stderr
        )
        return EXIT_FAILED
    print("healthy")

    return EXIT_OK


def _sandbox(args: argparse.Namespace) -> int:
    from runner.sandbox.server import serve
    from runner.sandbox.settings import SandboxSettings

    section: dict[str, Any] = {}
    if args.config is not None:
        from runner.config import load_sandbox_section

        sandbox_section, problems = load_sandbox_section(args.config)
        if sandbox_section is None:
            raise ConfigError(problems)
        section = dict(sandbox_section)
    try:
        asyncio.run(
            serve(
                SandboxSettings.from_mapping(section), args.host, args.port, args.ca_out
            )
        )
    except OSError as error:
        # A port in use, an unwritable --ca-out: say so in one line.
        print(
            f"error: the sandbox could not start on {args.host}:{args.port}: {error}",
            file=sys.stderr,
        )
        return EXIT_FAILED

    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
