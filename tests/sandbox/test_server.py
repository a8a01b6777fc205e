"""The service as a whole: serve(), its startup event, live data, the engine."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from runner.cli import main
from runner.sandbox import Sandbox, SandboxSettings, serve
from runner.sandbox.engine import QueryFailed

SMALL = SandboxSettings(days=0.05, events_per_hour=300, live_arrival=False)


async def test_serve_logs_its_start_and_stops_on_request(tmp_path: Path) -> None:
    """serve() logs the base URL, CA file and demo credentials, then stops cleanly."""
    stop = asyncio.Event()
    ca_out = tmp_path / "ca.pem"
    settings = SandboxSettings(
        days=0.05, events_per_hour=300, demo_client_secret="given-secret"
    )

    with capture_logs() as events:
        task = asyncio.create_task(serve(settings, port=0, ca_out=ca_out, stop=stop))
        while not task.done() and not any(
            event["event"] == "sandbox.started" for event in events
        ):
            await asyncio.sleep(0.05)
        started = next(e for e in events if e["event"] == "sandbox.started")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                started["base_url"] + "/healthz",
                ssl=ssl.create_default_context(cafile=str(ca_out)),
            ) as response,
        ):
            health = response.status
        stop.set()
        await asyncio.wait_for(task, 10)

    assert started["base_url"].startswith("https://localhost:")
    assert started["ca_file"] == str(ca_out)
    assert started["client_secret"] == "given-secret"
    assert started["tenant_id"] == "5a4d2c1b-0e9f-4a8b-9c7d-6e5f4a3b2c1d"
    assert started["client_id"] == "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    assert len(started["apis"]) == 3
    assert health == 200
    assert events[-1]["event"] == "sandbox.stopped"


async def test_demo_secret_is_generated_when_not_given() -> None:
    """Two sandboxes without a configured secret get different demo secrets."""
    first, second = Sandbox(SMALL), Sandbox(SMALL)

    assert first.demo.client_secret != second.demo.client_secret
    assert len(first.demo.client_secret.reveal()) >= 32
    assert "redacted" in repr(first.demo.client_secret)


async def test_live_arrival_adds_rows_as_time_passes() -> None:
    """With live arrival on, moving the clock ahead brings new rows."""
    settings = SandboxSettings(
        days=0.05, events_per_hour=600, arrival_interval_seconds=0.05
    )
    async with Sandbox(settings) as sandbox:
        assert sandbox.engine is not None
        loaded = sandbox.engine.rows_loaded
        sandbox.clock.advance(1800)
        for _ in range(40):
            if sandbox.engine.rows_loaded > loaded:
                break
            await asyncio.sleep(0.05)

        assert sandbox.engine.rows_loaded > loaded


async def test_engine_uses_the_sandbox_clock_for_now(sandbox: Sandbox) -> None:
    """KQL now() and the default window follow the sandbox clock."""
    assert sandbox.engine is not None

    result = await asyncio.to_thread(sandbox.engine.run, "print n = now()")

    value = datetime.fromisoformat(result.rows[0][0][:26])
    expected = sandbox.clock.now().replace(tzinfo=None)
    assert abs(value - expected) < timedelta(seconds=5)


async def test_engine_never_returns_rows_from_the_future(sandbox: Sandbox) -> None:
    """With the clock moved back an hour, no row is newer than the clock."""
    assert sandbox.engine is not None
    sandbox.clock.advance(-3600)
    try:
        result = await asyncio.to_thread(
            sandbox.engine.run,
            "DeviceProcessEvents | summarize latest = max(Timestamp)",
        )
        now = sandbox.clock.now().replace(tzinfo=None)
    finally:
        sandbox.clock.advance(3600)

    latest = datetime.fromisoformat(result.rows[0][0][:26])
    assert latest <= now
    assert latest > now - timedelta(minutes=30)


async def test_query_over_the_request_timeout_is_interrupted(sandbox: Sandbox) -> None:
    """A query running past the request timeout is stopped and reported as such."""
    assert sandbox.engine is not None
    # A join of every row with every row: billions of pairs, seconds of work.
    heavy = (
        "DeviceProcessEvents | extend k = 1 | join kind=inner "
        "(DeviceProcessEvents | extend k = 1) on k "
        "| summarize max(strlen(strcat(FileName, FileName1)))"
    )

    with pytest.raises(QueryFailed) as failure:
        await asyncio.to_thread(sandbox.engine.run, heavy, timeout=0.1)

    assert failure.value.kind == "timeout"


async def test_queries_charge_cpu_to_the_tenant(
    sandbox: Sandbox, make_app: Any, token: Any, call: Any, new_tenant: Any
) -> None:
    """A query's execution time is charged to its tenant's CPU budget."""
    tenant_id, client_id, secret = new_tenant()
    bearer = await token(make_app(client_id, secret, tenant_id), "mde")

    status, _, body = await call(
        "mde", bearer, {"Query": "DeviceProcessEvents | count"}
    )

    assert status == 200
    charged = sandbox.quotas.cpu_used(tenant_id, 3600.0)
    assert 0 < charged <= body["Stats"]["ExecutionTime"] * 1.5 + 0.05


async def test_serve_stops_cleanly_on_sigterm() -> None:
    """SIGTERM to the process ends serve() through its own handler."""
    settings = SandboxSettings(days=0.02, events_per_hour=300, live_arrival=False)

    with capture_logs() as events:
        task = asyncio.create_task(serve(settings))
        while not task.done() and not any(
            event["event"] == "sandbox.started" for event in events
        ):
            await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 10)

    assert events[-1]["event"] == "sandbox.stopped"


async def test_failed_start_leaves_no_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox that cannot listen removes its key files and raises."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            async with Sandbox(SMALL, port=taken.getsockname()[1]):
                pass

    assert list(scratch.iterdir()) == []


def test_sandbox_command_on_a_busy_port_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``hunt-runner sandbox`` on a port in use exits 1 with a one-line error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["sandbox", "--port", str(port)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"error: the sandbox could not start on 127.0.0.1:{port}" in err
    assert "address already in use" in err
    assert "Traceback" not in err


def test_sandbox_command_reads_a_folder_with_only_a_sandbox_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config needs no tenants or sinks; a bad sandbox key is file:line."""
    (tmp_path / "sandbox.yaml").write_text("sandbox:\n  days: 1\n  seed: 3\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        # Past the configuration, the busy port is the only thing in the way.
        assert main(["sandbox", "--config", str(tmp_path), "--port", port]) == 1
        (tmp_path / "sandbox.yaml").write_text("sandbox:\n  days: 1\n  seed: x\n")
        assert main(["sandbox", "--config", str(tmp_path), "--port", port]) == 2

    err = capsys.readouterr().err
    assert "could not start" in err
    assert f"{tmp_path / 'sandbox.yaml'}:3: sandbox.seed" in err
