"""Calls to the hunting APIs: the wire, retries, and translation into our errors.

Status codes become the error tree of ``runner.errors`` here and nowhere else:
401 gets one token refresh, then fails; 400 fails the hunt without a retry; 429
is handed to the caller's throttle hook and retried once the limiter allows;
5xx, resets, timeouts and broken bodies get bounded retries with backoff and
jitter (stamina), and so do token requests that failed the same way or were
throttled (``AuthError.retryable``), in the same loop and within the same
attempts. A
proxy that refuses the tunnel (407, 403) fails the call at once.
"""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import stamina
import structlog

from runner import network
from runner.auth import TokenProvider
from runner.clouds import Endpoints
from runner.errors import (
    ApiError,
    AuthError,
    ForbiddenError,
    ProxyRefusedError,
    QueryError,
    ServerError,
    ThrottledError,
    TlsError,
    TransportError,
    UnauthorizedError,
)
from runner.limiter import parse_retry_after
from runner.network import ProxySettings, describe_tls_failure
from runner.results import QueryResult, parse_response

log = structlog.get_logger(__name__)


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """One ``api.retry_scheduled`` event per retry, naming tenant and cause.

    A 429 is left out: the limiter logs each as ``limiter.throttled`` and
    decides the wait, so logging it here would count it twice.
    """
    error = details.caused_by
    if isinstance(error, ThrottledError):
        return
    log.warning(
        "api.retry_scheduled",
        tenant=getattr(error, "tenant", None),
        hunt=getattr(error, "hunt", None) or None,
        attempt=details.retry_num,
        wait_s=round(details.wait_for, 3),
        error=str(error),
    )


# stamina's own hook would log every retry as a bare "<context block>" call.
stamina.instrumentation.set_on_retry_hooks([_log_retry])

_CALL_QUOTA = re.compile(r"maximum allowed (\d+) per ([\d.:]+)")

# The longest an identity endpoint's Retry-After holds up a token retry: its
# quotas are per second or minute, so a longer one is a bug at the receiver.
TOKEN_RETRY_AFTER_CAP = 60.0


@dataclass(frozen=True)
class CallOutcome:
    """A successful query and what it took: HTTP calls made, seconds elapsed.

    ``elapsed`` counts only the HTTP exchanges, not the waits between them
    (call tokens, 429 pauses, backoff): on Graph it is the estimate of what
    the query cost in CPU.
    """

    result: QueryResult
    calls: int
    elapsed: float


def timespan(start: datetime, end: datetime) -> str:
    """The Graph ``Timespan`` for a window, ``start/end`` in ISO 8601 UTC."""
    return f"{_iso(start)}/{_iso(end)}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ssl_context(ca_bundle: str | None, *, verify: bool = True) -> ssl.SSLContext | bool:
    """TLS settings for a tenant: the system store plus an optional CA bundle.

    Kept for callers that predate ``runner.network.ssl_context``, which also
    takes ``ca_mode``.
    """
    return network.ssl_context(ca_bundle, "add", verify)


class HuntingClient:
    """Runs queries against one tenant's hunting endpoint."""

    def __init__(
        self,
        tenant: str,
        *,
        endpoints: Endpoints,
        tokens: TokenProvider,
        session: aiohttp.ClientSession,
        ssl: ssl.SSLContext | bool = True,
        proxy: ProxySettings | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 240.0,
        max_retries: int = 4,
    ) -> None:
        self.tenant = tenant
        self.endpoints = endpoints
        self._tokens = tokens
        self._session = session
        self._ssl = ssl
        # The query URL never changes, so the environment is consulted once.
        self._proxy, self._proxy_headers = (proxy or ProxySettings()).for_aiohttp(
            endpoints.query_url
        )
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_retries = max_retries

    @property
    def sends_timespan(self) -> bool:
        """Whether the endpoint restricts every table to the ``timespan`` given.

        Only Graph takes a ``Timespan``; on the legacy endpoints a query sees
        its window only through ``HuntStart`` and ``HuntEnd``.
        """
        return self.endpoints.backend == "graph"

    async def query(
        self,
        query: str,
        *,
        hunt: str = "",
        timespan: str | None = None,
        before_call: Callable[[], Awaitable[None]] | None = None,
        on_throttled: Callable[[ThrottledError], None] | None = None,
    ) -> CallOutcome:
        """Run *query*; ``before_call`` is awaited before every HTTP attempt.

        A limiter passes ``before_call`` to take a call token for each attempt,
        retries included, and ``on_throttled`` to learn of every 429. Without a
        limiter a 429 is waited out for its ``Retry-After``.
        """
        body: dict[str, Any] = {"Query": query}
        if timespan is not None and self.sends_timespan:
            body["Timespan"] = timespan
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        calls = 0
        refreshed = False
        elapsed = 0.0

        async def post(token: str) -> QueryResult:
            nonlocal elapsed
            started = time.monotonic()
            try:
                return await self._post(payload, hunt, token)
            finally:
                elapsed += time.monotonic() - started

        def retry_on(error: Exception) -> bool | float:
            if isinstance(error, ThrottledError):
                if on_throttled is not None:
                    on_throttled(error)
                    return 0.0
                return error.retry_after if error.retry_after is not None else 1.0
            if isinstance(error, TlsError | ProxyRefusedError):
                return False
            if isinstance(error, AuthError):
                if error.retryable and error.retry_after is not None:
                    return min(error.retry_after, TOKEN_RETRY_AFTER_CAP)
                return error.retryable

            return isinstance(error, ServerError | TransportError)

        async for attempt in stamina.retry_context(
            on=retry_on,
            attempts=self._max_retries + 1,
            timeout=None,
            wait_initial=0.5,
            wait_max=30.0,
        ):
            with attempt:
                # The token comes first: a limiter records the call when
                # before_call returns, so nothing slow may sit between the two.
                token = await self._tokens.token()
                if before_call is not None:
                    await before_call()
                calls += 1
                try:
                    result = await post(token)
                except UnauthorizedError:
                    if refreshed:
                        raise
                    refreshed = True
                    token = await self._tokens.refresh()
                    if before_call is not None:
                        await before_call()
                    calls += 1
                    result = await post(token)

        return CallOutcome(result=result, calls=calls, elapsed=elapsed)

    async def _post(self, payload: bytes, hunt: str, token: str) -> QueryResult:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
        }
        try:
            async with self._session.post(
                self.endpoints.query_url,
                data=payload,
                headers=headers,
                ssl=self._ssl,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                status = response.status
                response_headers = dict(response.headers)
        except aiohttp.ClientConnectorCertificateError as error:
            detail = getattr(error.certificate_error, "verify_message", None)
            raise TlsError(
                self.tenant,
                describe_tls_failure(
                    error.host, error.port, detail or str(error.certificate_error)
                ),
            ) from error
        except aiohttp.ClientSSLError as error:
            raise TlsError(self.tenant, f"TLS handshake failed: {error}") from error
        except aiohttp.ClientHttpProxyError as error:
            hint = ""
            if error.status == 407:
                hint = (
                    " (check proxy_username and proxy_password_env/proxy_password_file)"
                )
            reason = (
                f"the proxy {network.redact(self._proxy or '')} refused the tunnel: "
                f"{error.status} {error.message}{hint}"
            )
            # A 5xx says the proxy could not reach the host this time; a 4xx
            # (credentials, a policy) will be the same on every retry.
            if error.status >= 500:
                raise TransportError(self.tenant, reason) from error
            raise ProxyRefusedError(self.tenant, reason) from error
        except (TimeoutError, aiohttp.ClientError) as error:
            raise TransportError(
                self.tenant, f"request failed: {type(error).__name__}: {error}"
            ) from error

        if status == 200:
            try:
                return parse_response(json.loads(raw))
            except (ValueError, UnicodeDecodeError) as error:
                raise TransportError(
                    self.tenant, f"malformed response body ({len(raw)} bytes): {error}"
                ) from error

        raise _translate(self.tenant, hunt, status, raw, response_headers)


def _translate(
    tenant: str, hunt: str, status: int, raw: bytes, headers: Mapping[str, str]
) -> ApiError:
    code, message = _error_fields(raw)
    if status == 400:
        return QueryError(tenant, status, code, message, hunt=hunt)
    if status == 401:
        return UnauthorizedError(tenant, status, code, message, hunt=hunt)
    if status == 403:
        return ForbiddenError(tenant, status, code, message, hunt=hunt)
    if status == 429:
        quota = _CALL_QUOTA.search(message)
        return ThrottledError(
            tenant,
            status,
            code,
            message,
            retry_after=parse_retry_after(headers),
            window=quota.group(2) if quota else None,
            limit=int(quota.group(1)) if quota else None,
            hunt=hunt,
        )
    if status >= 500:
        return ServerError(
            tenant, status, code, message or "(empty message)", hunt=hunt
        )

    return ApiError(tenant, status, code, message, hunt=hunt)


def _error_fields(raw: bytes) -> tuple[str, str]:
    """The ``error.code`` and ``error.message`` of a body, whatever its shape."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "", raw[:200].decode("utf-8", "replace")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))
    if isinstance(error, str):
        return error, str(body.get("error_description", ""))

    return "", json.dumps(body)[:200]
