"""The API client over real HTTPS and msal: statuses become our errors, with retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import stamina
from aiohttp import web
from structlog.testing import capture_logs

from runner import clouds, network
from runner.auth import ClientCredential, TokenProvider
from runner.client import HuntingClient, ssl_context
from runner.errors import AuthError, QueryError, ServerError, TransportError
from runner.sandbox import FaultSettings, Sandbox, SandboxSettings
from runner.sandbox.certs import make_server_certificates
from runner.secrets import Secret

QUERY = "DeviceInfo | take 3"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    settings = SandboxSettings.from_mapping({"days": 0.1, "live_arrival": False})
    async with Sandbox(settings) as running:
        yield running


def _client(
    sandbox: Sandbox,
    session: aiohttp.ClientSession,
    *,
    backend: str = "graph",
    secret: Secret | None = None,
    read_timeout: float = 30.0,
) -> HuntingClient:
    endpoints = clouds.resolve(
        "sandbox", backend, sandbox.demo.tenant_id, sandbox_base=sandbox.base_url
    )
    tokens = TokenProvider(
        "lab",
        client_id=sandbox.demo.client_id,
        credential=ClientCredential(secret=secret or sandbox.demo.client_secret),
        authority=endpoints.authority,
        scope=endpoints.scope,
        verify=str(sandbox.ca_path),
    )
    return HuntingClient(
        "lab",
        endpoints=endpoints,
        tokens=tokens,
        session=session,
        ssl=ssl_context(str(sandbox.ca_path)),
        read_timeout=read_timeout,
        max_retries=3,
    )


@pytest.mark.parametrize("backend", ["graph", "xdr", "mde"])
async def test_each_backend_returns_rows(sandbox: Sandbox, backend: str) -> None:
    """Every backend answers through its own path and scope; legacy ones report CPU."""
    async with aiohttp.ClientSession() as session:
        outcome = await _client(sandbox, session, backend=backend).query(QUERY)
    assert len(outcome.result.rows) == 3
    assert outcome.calls == 1
    assert (outcome.result.cpu_seconds is None) == (backend == "graph")


async def test_wrong_secret_is_an_auth_error_naming_the_tenant(
    sandbox: Sandbox,
) -> None:
    """A wrong client secret fails with Entra's invalid_client, never the secret."""
    wrong = Secret("not-the-secret", "test")
    async with aiohttp.ClientSession() as session:
        client = _client(sandbox, session, secret=wrong)
        with pytest.raises(AuthError) as caught:
            await client.query(QUERY)
    assert caught.value.code == "invalid_client"
    assert "tenant lab" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


async def test_expired_token_is_refreshed_once(sandbox: Sandbox) -> None:
    """A 401 for an expired token gets one refresh, then the query succeeds."""
    async with aiohttp.ClientSession() as session:
        client = _client(sandbox, session)
        await client.query(QUERY)
        # Two hours pass on the service's clock: msal's cached token is now
        # expired for the service though msal still believes it valid.
        sandbox.clock.advance(2 * 3600)
        outcome = await client.query(QUERY)
    assert outcome.calls == 2
    assert len(outcome.result.rows) == 3


async def test_rejected_query_is_not_retried(sandbox: Sandbox) -> None:
    """A 400 carries the service's message and costs exactly one call."""
    async with aiohttp.ClientSession() as session:
        client = _client(sandbox, session)
        calls = 0

        async def count() -> None:
            nonlocal calls
            calls += 1

        with pytest.raises(QueryError) as caught:
            await client.query("NoSuchTable | take 1", hunt="h", before_call=count)
    assert caught.value.status == 400
    assert "NoSuchTable" in caught.value.message
    assert calls == 1


@pytest.mark.parametrize("fault", ["500", "504", "malformed", "truncated", "reset"])
async def test_transient_faults_are_retried(sandbox: Sandbox, fault: str) -> None:
    """5xx, broken bodies and resets are retried; the next answer is used."""
    sandbox.set_faults(FaultSettings(sequence=(fault, "ok")))
    with stamina.set_testing(True, attempts=10, cap=True), capture_logs() as events:
        async with aiohttp.ClientSession() as session:
            outcome = await _client(sandbox, session).query(QUERY)
    assert outcome.calls == 2
    assert len(outcome.result.rows) == 3
    (retry,) = [e for e in events if "retry" in e["event"]]
    assert (retry["event"], retry["tenant"], retry["attempt"]) == (
        "api.retry_scheduled",
        "lab",
        1,
    )


async def test_slow_answer_times_out_and_retries(sandbox: Sandbox) -> None:
    """A response slower than the read timeout is a transport error, then retried."""
    sandbox.set_faults(FaultSettings(sequence=("slow", "ok"), slow_seconds=3.0))
    with stamina.set_testing(True, attempts=10, cap=True):
        async with aiohttp.ClientSession() as session:
            outcome = await _client(sandbox, session, read_timeout=0.5).query(QUERY)
    assert outcome.calls == 2


async def test_retries_are_bounded(sandbox: Sandbox) -> None:
    """A service that keeps failing gives up after max_retries with a ServerError."""
    sandbox.set_faults(FaultSettings(sequence=("500",) * 10))
    with stamina.set_testing(True, attempts=10, cap=True):
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ServerError) as caught:
                await _client(sandbox, session).query(QUERY)
    assert caught.value.code == "UnknownError"


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"[1, 2]",
        b'{"schema": 5, "results": []}',
    ],
)
async def test_answer_that_is_not_a_result_object_is_a_transport_error(
    sandbox: Sandbox, tmp_path: Path, body: bytes
) -> None:
    """A 200 whose JSON is not a hunting result fails as a TransportError, retried."""
    certificates = make_server_certificates(tmp_path)
    hits = 0

    async def answer(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post(clouds.QUERY_PATHS["graph"], answer)
    gateway = web.AppRunner(app)
    await gateway.setup()
    await web.TCPSite(
        gateway, "127.0.0.1", 0, ssl_context=certificates.server_context()
    ).start()
    endpoints = clouds.resolve(
        "commercial",
        "graph",
        sandbox.demo.tenant_id,
        authority=f"{sandbox.base_url}/{sandbox.demo.tenant_id}",
        api_base=f"https://127.0.0.1:{gateway.addresses[0][1]}",
    )
    tokens = TokenProvider(
        "lab",
        client_id=sandbox.demo.client_id,
        credential=ClientCredential(secret=sandbox.demo.client_secret),
        authority=endpoints.authority,
        scope=endpoints.scope,
        verify=str(sandbox.ca_path),
    )
    try:
        with stamina.set_testing(True, attempts=10, cap=True):
            async with aiohttp.ClientSession() as session:
                client = HuntingClient(
                    "lab",
                    endpoints=endpoints,
                    tokens=tokens,
                    session=session,
                    ssl=network.ssl_context(certificates.ca_path, "replace"),
                    max_retries=1,
                )
                with pytest.raises(TransportError) as caught:
                    await client.query(QUERY)
    finally:
        tokens.close()
        await gateway.cleanup()

    assert str(caught.value).startswith("tenant lab: malformed response body")
    assert hits == 2
