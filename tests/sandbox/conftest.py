"""Shared fixtures for the sandbox tests: one sandbox per session, msal apps.

The session's sandbox runs on its own event loop in a background thread, so
every test (each on its own loop) reaches it over real sockets and HTTPS, as
the daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import msal
import pytest
import requests

from runner.sandbox import (
    CallLimit,
    ClientSettings,
    CpuLimit,
    QuotaSettings,
    Sandbox,
    SandboxSettings,
)

# Generous limits so the session's tests never throttle each other; the quota
# tests set their own limits for their own tenant.
ROOMY_QUOTAS = QuotaSettings(
    calls=(CallLimit(100_000, 60.0),), cpu=(CpuLimit(100_000.0, 3600.0),)
)
SCOPES = {
    "graph": "https://graph.microsoft.com/.default",
    "xdr": "https://api.security.microsoft.com/.default",
    "mde": "https://api.securitycenter.microsoft.com/.default",
}
PATHS = {
    "graph": "/v1.0/security/runHuntingQuery",
    "xdr": "/api/advancedhunting/run",
    "mde": "/api/advancedqueries/run",
}


class SandboxThread:
    """A sandbox serving from its own loop in a daemon thread."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.sandbox = Sandbox(settings)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sandbox:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self.sandbox

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with self.sandbox:
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:  # handed to the waiting test thread
            self._error = error
            self._ready.set()


@contextlib.contextmanager
def running_sandbox(settings: SandboxSettings) -> Iterator[Sandbox]:
    """A sandbox with *settings*, serving until the block ends."""
    thread = SandboxThread(settings)
    try:
        yield thread.start()
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The session's sandbox: two days of data, roomy quotas, no faults."""
    settings = SandboxSettings(
        days=2, events_per_hour=600, live_arrival=False, quotas=ROOMY_QUOTAS
    )
    with running_sandbox(settings) as running:
        yield running


@pytest.fixture
def http_session(sandbox: Sandbox) -> requests.Session:
    """The session msal should use: the sandbox CA, no environment overrides."""
    session = requests.Session()
    session.verify = str(sandbox.ca_path)
    session.trust_env = False
    return session


MakeApp = Callable[[str, Any, str], msal.ConfidentialClientApplication]


@pytest.fixture
def make_app(sandbox: Sandbox, http_session: requests.Session) -> MakeApp:
    """Builds real msal applications pointed at the sandbox authority."""

    def build(
        client_id: str, credential: Any, tenant_id: str
    ) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential,
            authority=f"{sandbox.base_url}/{tenant_id}",
            instance_discovery=False,
            http_client=http_session,
        )

    return build


async def acquire(app: msal.ConfidentialClientApplication, api: str) -> dict[str, Any]:
    """msal's client-credentials result for *api*, run off the loop."""
    return await asyncio.to_thread(app.acquire_token_for_client, scopes=[SCOPES[api]])


async def token_for(app: msal.ConfidentialClientApplication, api: str) -> str:
    """An access token for *api*; fails the test with msal's error if none."""
    result = await acquire(app, api)
    assert "access_token" in result, result
    return str(result["access_token"])


@pytest.fixture
def get_token() -> Callable[..., Any]:
    """``await get_token(app, api)``: msal's raw result for *api*."""
    return acquire


@pytest.fixture
def token() -> Callable[..., Any]:
    """``await token(app, api)``: an access token, or the test fails."""
    return token_for


@pytest.fixture
def demo_app(sandbox: Sandbox, make_app: MakeApp) -> msal.ConfidentialClientApplication:
    """The demo client as msal sees it, with its generated secret."""
    return make_app(
        sandbox.demo.client_id,
        sandbox.demo.client_secret.reveal(),
        sandbox.demo.tenant_id,
    )


@pytest.fixture
def new_tenant(sandbox: Sandbox) -> Callable[..., tuple[str, str, str]]:
    """Registers a fresh client in a fresh tenant: ``(tenant, client, secret)``."""

    def register(**options: Any) -> tuple[str, str, str]:
        tenant_id, client_id, secret = (str(uuid.uuid4()) for _ in range(3))
        sandbox.register_client(
            ClientSettings(
                client_id=client_id, tenant_id=tenant_id, secret=secret, **options
            )
        )
        return tenant_id, client_id, secret

    return register


@pytest.fixture
def clock_restored(sandbox: Sandbox) -> Iterator[Callable[[float], None]]:
    """Moves the sandbox clock for one test and moves it back afterwards."""
    moved = 0.0

    def move(seconds: float) -> None:
        nonlocal moved
        sandbox.clock.advance(seconds)
        moved += seconds

    yield move
    sandbox.clock.advance(-moved)


@pytest.fixture
def quotas_restored(sandbox: Sandbox) -> Iterator[Callable[[QuotaSettings], None]]:
    """Sets the sandbox's quota limits for one test; roomy limits come back after."""
    yield sandbox.set_quotas
    sandbox.set_quotas(ROOMY_QUOTAS)


@pytest.fixture
def faults_cleared(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, with its injected faults cleared after the test."""
    yield sandbox
    sandbox.set_faults(None)


async def post(
    sandbox: Sandbox,
    api: str,
    token: str | None,
    body: Any,
    *,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], Any]:
    """POST *body* to *api*; ``(status, headers, parsed JSON or raw text)``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.post(
            sandbox.base_url + PATHS[api],
            json=body,
            headers=headers,
            ssl=sandbox.client_ssl_context(),
        ) as response,
    ):
        text = await response.text()
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return response.status, dict(response.headers), parsed


@pytest.fixture
def call(sandbox: Sandbox) -> Callable[..., Any]:
    """``await call(api, token, body)``: ``(status, headers, body)`` from the API."""

    async def send(
        api: str, token: str | None, body: Any, *, timeout: float = 30.0
    ) -> tuple[int, dict[str, str], Any]:
        return await post(sandbox, api, token, body, timeout=timeout)

    return send
