"""The sandbox service: identity and hunting APIs on loopback HTTPS.

``Sandbox`` is an async context manager for tests and the daemon::

    async with Sandbox(SandboxSettings()) as sandbox:
        sandbox.base_url, sandbox.ca_path, sandbox.demo.client_secret

``serve`` runs the same service until SIGINT or SIGTERM, for the
``hunt-runner sandbox`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import ssl
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web

from ..secrets import Secret
from .api import HuntingApi
from .certs import ServerCertificates, make_server_certificates
from .engine import Engine
from .faults import Faults
from .identity import APIS, ClientRegistry, Identity
from .quotas import Quotas
from .settings import (
    DEMO_CLIENT_ID,
    DEMO_TENANT_ID,
    ClientSettings,
    FaultSettings,
    QuotaSettings,
    SandboxClock,
    SandboxSettings,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DemoClient:
    """The client registered out of the box, in the demo tenant."""

    tenant_id: str
    client_id: str
    client_secret: Secret


class Sandbox:
    """The emulated Defender identity endpoint and hunting APIs, in-process."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ca_out: Path | None = None,
        announce_secret: bool = False,
    ) -> None:
        self.settings = settings or SandboxSettings()
        # Only the standalone command prints the demo secret (its user needs it
        # to connect); an embedded sandbox keeps it out of the daemon's logs.
        self._announce_secret = announce_secret
        self.host = host
        self.port = port
        self.clock = SandboxClock(self.settings.clock_start)
        self.registry = ClientRegistry()
        self.quotas = Quotas(self.settings.quotas, self.clock)
        self.faults = Faults(self.settings.faults)
        self.identity = Identity(
            self.registry, self.clock, self.settings.token_lifetime_seconds
        )
        self.engine: Engine | None = None
        secret = self.settings.demo_client_secret or secrets.token_urlsafe(32)
        self.demo = DemoClient(
            tenant_id=DEMO_TENANT_ID,
            client_id=DEMO_CLIENT_ID,
            client_secret=Secret(secret, "sandbox demo client"),
        )
        self.base_url = ""
        self.startup_seconds = 0.0
        self._ca_out = ca_out
        self._directory: Path | None = None
        self._certificates: ServerCertificates | None = None
        self._runner: web.AppRunner | None = None
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox")
        self._arrival: asyncio.Task[None] | None = None

    @property
    def ca_path(self) -> Path:
        """The CA certificate (PEM) clients must trust."""
        if self._certificates is None:
            raise RuntimeError("the sandbox is not started")
        return self._certificates.ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """A TLS client context trusting the sandbox CA only."""
        if self._certificates is None:
            raise RuntimeError("the sandbox is not started")
        return self._certificates.client_context()

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:
            # A start that fails half-way (a port in use) leaves no key files
            # or threads behind.
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Make certificates, load telemetry, and start serving."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self._directory = Path(tempfile.mkdtemp(prefix="hunt-runner-sandbox-"))
        self._certificates = await loop.run_in_executor(
            self._executor,
            lambda: make_server_certificates(self._directory, ca_out=self._ca_out),
        )
        self.registry.register_secret(
            self.demo.client_id,
            self.demo.client_secret.reveal(),
            tenant_id=self.demo.tenant_id,
        )
        for client in self.settings.clients:
            self.registry.add(client)

        self.engine = Engine(self.settings, self.clock)
        rows = await loop.run_in_executor(self._executor, self.engine.load)

        app = web.Application()
        app.router.add_get("/healthz", _healthz)
        self.identity.add_routes(app)
        HuntingApi(
            self.settings,
            self.identity,
            self.engine,
            self.quotas,
            self.faults,
            self._executor,
        ).add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.host,
            self.port,
            ssl_context=self._certificates.server_context(),
        )
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base_url = f"https://localhost:{self.port}"
        self.identity.base_url = self.base_url
        if self.settings.live_arrival:
            self._arrival = asyncio.create_task(self._arrive_forever())
        self.startup_seconds = time.perf_counter() - started

        log.info(
            "sandbox.started",
            base_url=self.base_url,
            ca_file=str(self.ca_path),
            tenant_id=self.demo.tenant_id,
            client_id=self.demo.client_id,
            **(
                {"client_secret": self.demo.client_secret.reveal()}
                if self._announce_secret
                else {}
            ),
            apis=[
                f"{self.base_url}/v1.0/security/runHuntingQuery",
                f"{self.base_url}/api/advancedhunting/run",
                f"{self.base_url}/api/advancedqueries/run",
            ],
            scopes=[f"{api.resource}/.default" for api in APIS.values()],
            rows=rows,
            startup_s=round(self.startup_seconds, 3),
        )

    async def stop(self) -> None:
        """Stop serving and release everything the sandbox holds."""
        if self._arrival is not None:
            self._arrival.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._arrival
            self._arrival = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.engine is not None:
            self.engine.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        log.info("sandbox.stopped", base_url=self.base_url)

    def set_faults(self, faults: FaultSettings | None = None) -> None:
        """Replace the injected faults at runtime; ``None`` clears them."""
        self.faults.configure(faults or FaultSettings())

    def set_quotas(self, quotas: QuotaSettings | None = None) -> None:
        """Replace the quota limits at runtime and forget past calls and charges."""
        self.quotas.settings = quotas or self.settings.quotas
        self.quotas.reset()

    def register_client(self, client: ClientSettings) -> None:
        """Register an application at runtime (secret and/or certificate)."""
        self.registry.add(client)

    async def arrive(self) -> int:
        """Fill telemetry up to the sandbox clock's now; rows added."""
        if self.engine is None:
            raise RuntimeError("the sandbox is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.engine.arrive)

    async def _arrive_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.arrival_interval_seconds)
            rows = await self.arrive()
            log.debug("sandbox.telemetry_arrived", rows=rows)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(
    settings: SandboxSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    ca_out: Path | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the sandbox until SIGINT/SIGTERM (or until *stop* is set).

    Installs its own SIGINT and SIGTERM handlers on the running loop and
    removes them on return, so the command needs no signal wiring. Logging is
    the caller's to configure (``runner.logs.configure``).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop.set)
            installed.append(number)
        except (NotImplementedError, RuntimeError):
            # Not the main thread, or a platform without loop signal support.
            pass
    try:
        async with Sandbox(
            settings, host=host, port=port, ca_out=ca_out, announce_secret=True
        ):
            await stop.wait()
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
