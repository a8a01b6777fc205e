"""Wiring: from loaded configuration and hunts to a running daemon.

``Runtime`` owns every long-lived object of a process (the HTTP session, one
token provider and client per tenant, the limiter, the state file, the outbox
and its dispatcher, and the in-process sandbox when a tenant's cloud is
``sandbox``) and closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import structlog

from runner import clouds, network
from runner.auth import ClientCredential, TokenProvider
from runner.client import HuntingClient
from runner.clock import Clock, SystemClock
from runner.config import SERVICE_REQUEST_SECONDS, Limits, Settings, Tenant
from runner.executor import Executor, RunResult
from runner.hunts import Hunt
from runner.limiter import Limiter
from runner.outbox import Outbox
from runner.records import Record
from runner.sinks import build_sink
from runner.sinks.dispatcher import Dispatcher
from runner.state import State, exclusive

log = structlog.get_logger(__name__)

STATUS_INTERVAL = 10.0
# The limiter's levels also go to the log, at most this often (real seconds).
STATUS_LOG_INTERVAL = 60.0


class Runtime:
    """Everything one process needs to run hunts; use with ``async with``."""

    def __init__(
        self,
        settings: Settings,
        hunts: Sequence[Hunt],
        *,
        clock: Clock | None = None,
        sandbox: Any = None,
    ) -> None:
        self.settings = settings
        self.hunts = [hunt for hunt in hunts if hunt.enabled]
        self.clock: Clock = clock or SystemClock()
        self._external_sandbox = sandbox
        self.sandbox: Any = None
        self._stack = AsyncExitStack()
        self.clients: dict[str, HuntingClient] = {}
        self._tokens: list[TokenProvider] = []

    async def __aenter__(self) -> Runtime:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        settings = self.settings
        if self.hunts:
            # A process that runs hunts owns the watermarks and the outbox.
            self._stack.enter_context(exclusive(settings.state_path))
        if any(t.cloud == "sandbox" for t in settings.tenants):
            self.sandbox = self._external_sandbox or await self._start_sandbox()
        self.state = State(settings.state_path)
        self._stack.callback(self.state.close)
        # Proxies are resolved per tenant (runner.network), not from the
        # environment by aiohttp, so that a tenant's proxy setting wins.
        self.session = aiohttp.ClientSession(trust_env=False)
        self._stack.push_async_callback(self.session.close)
        # The limiter writes down every call and CPU charge in the state file,
        # and takes back what an earlier process spent, so that a restart
        # (or a crash loop) does not start each tenant's windows from nothing.
        self.limiter = Limiter(self.clock, journal=self.state)
        self._status_logged_at = time.monotonic()
        self._stack.push_async_callback(self.limiter.aclose)
        quota_owners: dict[str, Tenant] = {}
        for tenant in settings.tenants:
            client = self._client(tenant)
            self.clients[tenant.name] = client
            # One directory, one quota: entries that sign in to the same
            # tenant share the limiter of the first of them.
            owner = quota_owners.setdefault(client.endpoints.authority.lower(), tenant)
            if owner is tenant:
                limiter = self.limiter.add(tenant.name, tenant.limits)
                since = self.clock.now() - limiter.memory
                limiter.restore(self.state.quota_usage(tenant.name, since))
                continue
            self.limiter.share(tenant.name, owner.name)
            log.warning(
                "tenant.quota_shared",
                tenant=tenant.name,
                shares_with=owner.name,
                authority=client.endpoints.authority,
                # row_cap and max_retries stay the entry's own; the rest is
                # the shared limiter's.
                limits_ignored=_quota(tenant.limits) != _quota(owner.limits),
                note="both entries sign in to one directory, whose quota the "
                "service counts once; the first entry's limits apply",
            )
        self.outbox = Outbox(settings.state_path, capacity=settings.outbox_capacity)
        self._stack.callback(self.outbox.close)
        sinks = [(spec, build_sink(spec)) for spec in settings.sinks]
        self.dispatcher = Dispatcher(
            self.outbox,
            sinks,
            dead_letter_dir=settings.state_path.parent / "dead-letter",
        )
        self.dispatcher.start()
        self._stack.push_async_callback(self.dispatcher.aclose)
        self.executor = Executor(
            state=self.state,
            clients=self.clients,
            limiter=self.limiter,
            clock=self.clock,
            sinks_for=self._sinks_for,
            data_window=settings.data_window,
            wait_for_room=self.outbox.wait_for_room,
            notify=self._enqueued,
            tenants_for=self._tenants_for,
            row_caps={t.name: t.limits.row_cap for t in settings.tenants},
        )

    async def _start_sandbox(self) -> Any:
        from runner.sandbox.server import Sandbox
        from runner.sandbox.settings import SandboxSettings

        sandbox_settings = SandboxSettings.from_mapping(dict(self.settings.sandbox))
        sandbox = await self._stack.enter_async_context(Sandbox(sandbox_settings))
        log.info(
            "sandbox.embedded", base_url=sandbox.base_url, ca_file=str(sandbox.ca_path)
        )

        return sandbox

    def _client(self, tenant: Tenant) -> HuntingClient:
        credential = tenant.credential
        if tenant.cloud == "sandbox":
            demo = self.sandbox.demo
            tenant_id = tenant.tenant_id or demo.tenant_id
            client_id = tenant.client_id or demo.client_id
            if credential.kind == "sandbox":
                proof = ClientCredential(secret=demo.client_secret)
            else:
                proof = _proof(credential)
            ca_bundle: str | None = tenant.ca_bundle or str(self.sandbox.ca_path)
            sandbox_base = self.sandbox.base_url
        else:
            tenant_id = tenant.tenant_id
            client_id = tenant.client_id or ""
            proof = _proof(credential)
            ca_bundle = tenant.ca_bundle
            sandbox_base = None
        endpoints = clouds.resolve(
            tenant.cloud,
            tenant.backend,
            tenant_id,
            authority=tenant.authority,
            api_base=tenant.api_base,
            sandbox_base=sandbox_base,
        )
        # A sandbox tenant without a bundle of its own trusts the sandbox's CA
        # alone; without any bundle the mode makes no difference.
        ca_mode = tenant.ca_mode if tenant.ca_bundle else "replace"
        if not tenant.verify_tls:
            log.warning(
                "tenant.tls_verification_disabled",
                tenant=tenant.name,
                authority=endpoints.authority,
                query_url=endpoints.query_url,
            )
        if tenant.read_timeout < SERVICE_REQUEST_SECONDS:
            log.warning(
                "tenant.read_timeout_below_service_limit",
                tenant=tenant.name,
                read_timeout_s=tenant.read_timeout,
                service_limit_s=SERVICE_REQUEST_SECONDS,
                note="a query the service is still running is cut off here and retried",
            )
        proxy_value = tenant.proxy
        if proxy_value is None and tenant.cloud == "sandbox":
            # The embedded sandbox listens on loopback, which a corporate proxy
            # named in HTTPS_PROXY cannot reach; a proxy setting still wins.
            proxy_value = network.DIRECT
        proxy = network.proxy_settings(
            proxy_value,
            username=tenant.proxy_username,
            password=tenant.proxy_password,
        )
        log.debug(
            "tenant.network",
            tenant=tenant.name,
            authority=endpoints.authority,
            query_url=endpoints.query_url,
            ca_bundle=ca_bundle,
            ca_mode=ca_mode,
            proxy=network.redact(proxy.url) if proxy.url else None,
            proxy_source=proxy.source,
        )
        tokens = TokenProvider(
            tenant.name,
            client_id=client_id,
            credential=proof,
            authority=endpoints.authority,
            scope=endpoints.scope,
            verify=network.requests_verify(ca_bundle, ca_mode, tenant.verify_tls),
            proxy=proxy,
            connect_timeout=tenant.connect_timeout,
            read_timeout=tenant.read_timeout,
        )
        self._tokens.append(tokens)
        self._stack.callback(tokens.close)

        return HuntingClient(
            tenant.name,
            endpoints=endpoints,
            tokens=tokens,
            session=self.session,
            ssl=network.ssl_context(ca_bundle, ca_mode, tenant.verify_tls),
            proxy=proxy,
            connect_timeout=tenant.connect_timeout,
            read_timeout=tenant.read_timeout,
            max_retries=tenant.limits.max_retries,
        )

    def _enqueued(self, count: int) -> None:
        """A run queued *count* deliveries: count them and wake the workers."""
        self.outbox.added(count)
        self.dispatcher.notify()

    def _tenants_for(self, hunt: Hunt) -> Sequence[str]:
        return hunt.tenants or tuple(t.name for t in self.settings.tenants)

    def _sinks_for(self, hunt: Hunt, records: Sequence[Record]) -> Sequence[str]:
        """The sinks a hunt's records go to: the hunt's choice, then each sink's filter.

        Every record of one run shares the hunt, severity and tags the filters
        look at, so the first record decides for all of them.
        """
        if not records:
            return ()

        return self.dispatcher.route(
            records[0], among=hunt.sinks or self.settings.default_sinks
        )

    def publish_status(self, *, force_log: bool = False) -> None:
        """Write each tenant's limiter snapshot to the state file for ``status``.

        Every ``STATUS_LOG_INTERVAL`` seconds, and when *force_log* is set, the
        same snapshot is logged as ``limiter.status``.
        """
        now = time.monotonic()
        due = force_log or now - self._status_logged_at >= STATUS_LOG_INTERVAL
        for tenant, snapshot in self.limiter.snapshot().items():
            self.state.put_tenant_status(tenant, snapshot)
            limiter = self.limiter.for_tenant(tenant)
            self.state.forget_quota(tenant, self.clock.now() - limiter.memory)
            if due:
                log.info("limiter.status", **snapshot)
        if due:
            self._status_logged_at = now

    async def run_once(self, *, drain_timeout: float = 300.0) -> list[RunResult]:
        """Every enabled hunt once over its current window, then deliver everything."""
        # As the daemon does: a health check sees a live process from its start,
        # and a long run (quota waits, a catch-up, a slow receiver) stays fresh.
        self.publish_status()
        publisher = asyncio.ensure_future(self._publish_status_every(STATUS_INTERVAL))
        try:
            batches = await asyncio.gather(*(self.executor.run(h) for h in self.hunts))
            self.publish_status(force_log=True)
            await self.dispatcher.drain(drain_timeout)
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher

        return [result for batch in batches for result in batch]

    async def _publish_status_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.publish_status()

    async def _run_caught_up(self, hunt: Hunt, stop: asyncio.Event) -> None:
        """Run *hunt*, then again in each tenant that is still catching up.

        A run makes a bounded number of halvings; waiting for the next fire of
        a daily hunt would let a long catch-up fall behind by more than one run
        can fetch, until the data window cuts it short. The limiter still
        orders these runs among the others.
        """
        results = await self.executor.run(hunt)
        behind = [result.tenant for result in results if result.catching_up]
        while behind and not stop.is_set():
            results = await asyncio.gather(
                *(self.executor.run_in(hunt, tenant) for tenant in behind)
            )
            behind = [result.tenant for result in results if result.catching_up]

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Run hunts on schedule until *stop* is set, then finish what is in flight."""
        from runner.schedule import build_scheduler

        in_flight: set[asyncio.Task[Any]] = set()

        async def job(hunt: Hunt) -> None:
            # The run is a task of its own: APScheduler's executor cancels the
            # jobs it started when the scheduler shuts down, and a stop must let
            # runs in flight finish instead.
            task = asyncio.ensure_future(self._run_caught_up(hunt, stop))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                # Only this wrapper was cancelled (shutdown); the run goes on
                # and the shutdown below waits for it.

        scheduler = build_scheduler(self.hunts, job)
        scheduler.start()
        log.info("daemon.started", hunts=len(self.hunts), tenants=len(self.clients))
        try:
            # A status at once: health checks see a live daemon from its start.
            self.publish_status()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STATUS_INTERVAL):
                        await stop.wait()
                self.publish_status()
        finally:
            scheduler.shutdown(wait=False)
            if in_flight:
                log.info("daemon.finishing", runs_in_flight=len(in_flight))
                await asyncio.gather(*in_flight, return_exceptions=True)
            self.publish_status(force_log=True)
            await self.dispatcher.drain(30.0)
            log.info("daemon.stopped")


def _quota(limits: Limits) -> tuple[object, ...]:
    """The parts of *limits* a shared limiter takes from its first entry."""
    return (
        limits.calls,
        limits.cpu,
        limits.max_concurrent,
        limits.cpu_block_boundary,
        limits.time_scale,
    )


def _proof(credential: Any) -> ClientCredential:
    return ClientCredential(
        secret=credential.secret,
        private_key_pem=credential.private_key_pem,
        certificate_pem=credential.certificate_pem,
        thumbprint=credential.thumbprint,
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set *stop*: the daemon finishes work in flight, exits."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
