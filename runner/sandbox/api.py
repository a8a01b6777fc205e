"""The three hunting endpoints at their real paths, with their real shapes.

Each call goes through the same steps: verify the bearer token for the
endpoint's audience and role, admit the call against the tenant's quotas,
apply any injected fault, run the query in a worker thread, charge its CPU,
and answer in the endpoint's shape (Graph lower-case without statistics, the
legacy endpoints with ``Stats``).

Extra latency (``extra_latency_seconds``) is waited before the query and is
not charged as CPU: it emulates a slow service, while ``cost_factor`` emulates
an expensive query.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import uuid
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

import isodate
import structlog
from aiohttp import web

from .engine import Engine, QueryFailed, QueryResult
from .faults import Faults
from .identity import APIS, Api, BearerRefused, Identity
from .quotas import Quotas, dotnet_timespan
from .settings import SandboxSettings

log = structlog.get_logger(__name__)

GRAPH_PATHS = ("/v1.0/security/runHuntingQuery", "/beta/security/runHuntingQuery")
XDR_PATH = "/api/advancedhunting/run"
MDE_PATH = "/api/advancedqueries/run"


class BadTimespan(ValueError):
    """A Graph ``Timespan`` in none of the five ISO 8601 forms."""


def parse_timespan(text: str, now: datetime) -> tuple[datetime, datetime]:
    """The ``(start, end)`` a Graph ``Timespan`` names, in UTC.

    The five forms: ``start/end``, ``duration/end``, ``start/duration``,
    ``duration`` (back from *now*) and ``start`` (up to *now*).
    """
    parts = text.strip().split("/")
    try:
        if len(parts) == 1:
            if parts[0].upper().startswith("P"):
                return now - _duration(parts[0]), now
            return _instant(parts[0]), now
        if len(parts) == 2:
            first, second = parts
            if first.upper().startswith("P"):
                end = _instant(second)
                return end - _duration(first), end
            start = _instant(first)
            if second.upper().startswith("P"):
                return start, start + _duration(second)
            return start, _instant(second)
    except (ValueError, isodate.ISO8601Error, OverflowError) as error:
        raise BadTimespan(f"Invalid Timespan '{text}': {error}") from error

    raise BadTimespan(f"Invalid Timespan '{text}'")


def _duration(text: str) -> timedelta:
    duration = isodate.parse_duration(text)
    if isinstance(duration, timedelta):
        return duration
    # Years and months depend on the date they are counted from; a fixed
    # reference instant makes them a plain length of time.
    reference = datetime(2000, 1, 1)
    return (reference + duration) - reference


def _instant(text: str) -> datetime:
    if "T" in text.upper():
        value = isodate.parse_datetime(text)
    else:
        day = isodate.parse_date(text)
        value = datetime(day.year, day.month, day.day)

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class HuntingApi:
    """Serves the Graph, XDR and MDE hunting endpoints over one engine."""

    def __init__(
        self,
        settings: SandboxSettings,
        identity: Identity,
        engine: Engine,
        quotas: Quotas,
        faults: Faults,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.engine = engine
        self.quotas = quotas
        self.faults = faults
        self.executor = executor

    def add_routes(self, app: web.Application) -> None:
        """Mount the three endpoints at their real paths."""
        for path in GRAPH_PATHS:
            app.router.add_post(path, self._graph)
        app.router.add_post(XDR_PATH, self._xdr)
        app.router.add_post(MDE_PATH, self._mde)

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, APIS["graph"])

    async def _xdr(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, APIS["xdr"])

    async def _mde(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, APIS["mde"])

    async def _handle(self, request: web.Request, api: Api) -> web.StreamResponse:
        started = time.perf_counter()
        call = _Call(request, api)
        tenant = ""
        try:
            claims = self.identity.verify_bearer(
                request.headers.get("Authorization"), api
            )
            tenant = str(claims.get("tid", ""))
            response = await self._admitted(request, call, tenant)
        except BearerRefused as refusal:
            response = call.bearer_error(refusal)
        except _Answer as answer:
            response = answer.response

        log.info(
            "sandbox.query",
            api=api.name,
            tenant_id=tenant,
            status=response.status,
            rows=call.rows,
            duration_s=round(time.perf_counter() - started, 4),
            fault=call.fault,
        )

        return response

    async def _admitted(
        self, request: web.Request, call: _Call, tenant: str
    ) -> web.StreamResponse:
        refusal = self.quotas.admit(tenant)
        if refusal is not None:
            response = call.error(429, "429", refusal.message)
            response.headers["Retry-After"] = f"{refusal.retry_after:.3f}"
            return response

        # The request is read before any fault: a client that gives up during
        # a slow answer must not leave a half-read body behind.
        query, window = await self._read_body(request, call)
        call.fault = self.faults.next(call.api.name)
        if call.fault == "reset":
            _reset(request)
            raise _Answer(web.Response(status=500))
        if call.fault == "unknown_error":
            return call.error(500, "UnknownError", "")
        if call.fault == "gateway_timeout":
            return call.error(
                504,
                "GatewayTimeout",
                "The gateway did not receive a response within the specified time.",
            )
        if call.fault == "malformed":
            return web.Response(
                status=200,
                body=b'{"Schema": [{"Name": "Timestamp", "Type": "DateTime"}, <html>',
                content_type="application/json",
            )
        if call.fault == "slow":
            await asyncio.sleep(self.faults.settings.slow_seconds)

        if self.settings.extra_latency_seconds > 0:
            await asyncio.sleep(self.settings.extra_latency_seconds)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self.executor, self._run, query, window[0], window[1]
            )
        except QueryFailed as failure:
            return call.query_error(failure)

        # The figure charged is the figure reported in Stats, so a client that
        # budgets by Stats sees exactly what the quota counts.
        charged = result.wall_seconds * self.settings.cost_factor
        self.quotas.charge(tenant, charged)
        call.rows = len(result.rows)
        body = call.body(result, self.engine.rows_loaded, charged)
        if call.fault == "truncated":
            data = json.dumps(body).encode()
            return web.Response(
                status=200, body=data[: len(data) // 2], content_type="application/json"
            )

        return web.json_response(body, dumps=_dumps)

    def _run(
        self, query: str, start: datetime | None, end: datetime | None
    ) -> QueryResult:
        limits = self.quotas.settings
        return self.engine.run(
            query,
            start,
            end,
            row_cap=limits.row_cap,
            size_cap=limits.result_size_bytes,
            timeout=limits.request_timeout_seconds,
        )

    async def _read_body(
        self, request: web.Request, call: _Call
    ) -> tuple[str, tuple[datetime | None, datetime | None]]:
        try:
            body = await request.json()
        except ValueError as error:
            raise _Answer(
                call.error(400, "InvalidRequestBody", "Missing query.")
            ) from error
        if not isinstance(body, dict):
            raise _Answer(call.error(400, "InvalidRequestBody", "Missing query."))
        if call.api.name == "graph":
            # Graph binds its body case-insensitively; the legacy APIs do not.
            body = {key.lower(): value for key, value in body.items()}
            query, timespan = body.get("query"), body.get("timespan")
        else:
            query, timespan = body.get("Query"), None
        if not isinstance(query, str) or not query.strip():
            raise _Answer(call.error(400, "InvalidRequestBody", "Missing query."))
        if timespan is None:
            return query, (None, None)
        try:
            start, end = parse_timespan(str(timespan), self.engine.clock.now())
        except BadTimespan as error:
            raise _Answer(call.error(400, "BadRequest", str(error))) from error

        return query, (start, end)


class _Answer(Exception):
    """A response decided early in the handling of a call."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("early answer")
        self.response = response


class _Call:
    """One API call: builds the endpoint's bodies and error shapes."""

    def __init__(self, request: web.Request, api: Api) -> None:
        self.api = api
        self.request_id = str(uuid.uuid4())
        self.client_request_id = request.headers.get("client-request-id", "")
        self.rows = 0
        self.fault = "ok"

    @property
    def graph(self) -> bool:
        return self.api.name == "graph"

    def error(self, status: int, code: str, message: str) -> web.Response:
        if self.graph:
            error: dict[str, Any] = {
                "code": code,
                "message": message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": self.request_id,
                    "client-request-id": self.client_request_id or self.request_id,
                },
            }
        else:
            error = {"code": code, "message": message, "target": self.request_id}

        return web.json_response({"error": error}, status=status)

    def bearer_error(self, refusal: BearerRefused) -> web.Response:
        if refusal.status == 403:
            return self.error(403, "Forbidden", refusal.message)
        code = "InvalidAuthenticationToken" if self.graph else "Unauthorized"
        response = self.error(401, code, refusal.message)
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'

        return response

    def query_error(self, failure: QueryFailed) -> web.Response:
        if failure.kind == "timeout":
            return self.error(504, "GatewayTimeout", failure.message)
        if self.graph or failure.kind in ("syntax", "too_large"):
            code = "BadRequest"
        else:
            code = "SemanticError"

        return self.error(400, code, failure.message)

    def body(
        self, result: QueryResult, rows_loaded: int, cpu_seconds: float
    ) -> dict[str, Any]:
        names = [column.name for column in result.columns]
        results = [dict(zip(names, row, strict=True)) for row in result.rows]
        if self.graph:
            return {
                "@odata.context": "https://graph.microsoft.com/v1.0/"
                "$metadata#microsoft.graph.security.huntingQueryResults",
                "schema": [
                    {"name": column.name, "type": column.type}
                    for column in result.columns
                ],
                "results": results,
            }
        cpu = dotnet_timespan(cpu_seconds)

        return {
            "Stats": {
                "ExecutionTime": round(result.wall_seconds, 7),
                "resource_usage": {
                    "cache": {
                        "memory": {"hits": 0, "misses": 0, "total": 0},
                        "disk": {"hits": 0, "misses": 0, "total": 0},
                    },
                    "cpu": {"user": cpu, "kernel": "00:00:00", "total cpu": cpu},
                    "memory": {"peak_per_node": 0},
                },
                # XXX: one entry for the whole store rather than per table the
                # query touched; clients reading it for sizing get a rough figure.
                "dataset_statistics": [
                    {"table_row_count": rows_loaded, "table_size": result.size_bytes}
                ],
            },
            "Schema": [
                {"Name": column.name, "Type": column.type} for column in result.columns
            ],
            "Results": results,
        }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    raw = transport.get_extra_info("socket")
    if raw is not None:
        # A zero linger turns the close into a TCP reset, as a dropped
        # connection looks to the client.
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
