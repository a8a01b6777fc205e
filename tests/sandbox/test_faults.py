"""Injected faults arrive over real HTTPS exactly as configured."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from runner.sandbox import FaultSettings, Sandbox
from runner.sandbox.faults import Faults
from runner.sandbox.settings import SettingsError

QUERY = {"Query": "DeviceInfo | take 3"}


async def test_scripted_sequence_arrives_in_order(
    faults_cleared: Sandbox, demo_app: Any, token: Any, call: Any
) -> None:
    """ok, 500, 504, malformed, truncated, then ok again once the script ends."""
    faults_cleared.set_faults(
        FaultSettings(sequence=("ok", "500", "504", "malformed", "truncated"))
    )
    bearer = await token(demo_app, "mde")

    answers = [await call("mde", bearer, QUERY) for _ in range(6)]

    statuses = [status for status, _, _ in answers]
    assert statuses == [200, 500, 504, 200, 200, 200]
    assert answers[1][2]["error"]["code"] == "UnknownError"
    assert answers[1][2]["error"]["message"] == ""
    assert "target" in answers[1][2]["error"]
    assert answers[2][2]["error"]["code"] == "GatewayTimeout"
    assert isinstance(answers[3][2], str)  # not JSON
    assert isinstance(answers[4][2], str)  # cut short, not JSON
    assert answers[4][2].startswith('{"Stats"')
    assert isinstance(answers[5][2], dict)


async def test_graph_500_has_graph_shape(
    faults_cleared: Sandbox, demo_app: Any, token: Any, call: Any
) -> None:
    """An injected UnknownError on Graph carries Graph's innerError."""
    faults_cleared.set_faults(FaultSettings(sequence=("unknown_error",)))
    bearer = await token(demo_app, "graph")

    status, _, body = await call("graph", bearer, QUERY)

    assert status == 500
    assert body["error"]["code"] == "UnknownError"
    assert "innerError" in body["error"]


async def test_reset_drops_the_connection(
    faults_cleared: Sandbox, demo_app: Any, token: Any, call: Any
) -> None:
    """A reset fault closes the connection without an HTTP answer."""
    faults_cleared.set_faults(FaultSettings(sequence=("reset",)))
    bearer = await token(demo_app, "xdr")

    with pytest.raises(aiohttp.ClientError):
        await call("xdr", bearer, QUERY)
    status, _, _ = await call("xdr", bearer, QUERY)

    assert status == 200


async def test_slow_answer_outlasts_the_client_timeout(
    faults_cleared: Sandbox, demo_app: Any, token: Any, call: Any
) -> None:
    """A slow fault answers later than a client timeout shorter than it."""
    faults_cleared.set_faults(FaultSettings(sequence=("slow",), slow_seconds=0.6))
    bearer = await token(demo_app, "graph")

    with pytest.raises(asyncio.TimeoutError):
        await call("graph", bearer, QUERY, timeout=0.2)
    faults_cleared.set_faults(FaultSettings(sequence=("slow",), slow_seconds=0.2))
    status, _, _ = await call("graph", bearer, QUERY, timeout=5.0)

    assert status == 200


async def test_faults_apply_only_to_their_endpoints(
    faults_cleared: Sandbox, demo_app: Any, token: Any, call: Any
) -> None:
    """A fault plan for the MDE endpoint leaves Graph calls alone."""
    faults_cleared.set_faults(
        FaultSettings(sequence=("500", "500"), endpoints=("mde",))
    )

    graph, _, _ = await call("graph", await token(demo_app, "graph"), QUERY)
    mde, _, _ = await call("mde", await token(demo_app, "mde"), QUERY)

    assert (graph, mde) == (200, 500)


def test_probabilities_are_seeded() -> None:
    """The same seed draws the same faults; the rates are roughly as configured."""
    settings = FaultSettings(probabilities={"unknown_error": 0.2, "reset": 0.1}, seed=7)

    first = [Faults(settings).next("graph") for _ in range(1)]
    draws = Faults(settings)
    sequence = [draws.next("graph") for _ in range(2000)]
    again = Faults(settings)

    assert [again.next("graph") for _ in range(2000)] == sequence
    assert first[0] == sequence[0]
    assert 300 < sequence.count("unknown_error") < 500
    assert 120 < sequence.count("reset") < 280


def test_unknown_fault_is_rejected() -> None:
    """A fault name the sandbox does not know is a settings error naming it."""
    with pytest.raises(SettingsError, match="'teapot'"):
        FaultSettings(sequence=("teapot",))


async def test_client_gone_during_a_slow_answer_logs_no_server_error(
    faults_cleared: Sandbox,
    demo_app: Any,
    token: Any,
    call: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that times out on a slow fault leaves no traceback in the logs."""
    faults_cleared.set_faults(FaultSettings(sequence=("slow",), slow_seconds=0.3))
    bearer = await token(demo_app, "graph")

    with caplog.at_level(logging.ERROR), pytest.raises(asyncio.TimeoutError):
        await call("graph", bearer, QUERY, timeout=0.1)
    await asyncio.sleep(0.6)
    status, _, _ = await call("graph", bearer, QUERY)

    assert status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
