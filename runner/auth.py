"""Tokens for the hunting APIs, by client credentials, through msal.

One ``ConfidentialClientApplication`` lives per tenant for the whole process,
so msal's cache serves tokens until shortly before they expire. msal is
synchronous; every call to it runs in a worker thread.

Failures become ``AuthError``: ``retryable`` when the identity endpoint or the
proxy could not be reached or answered a 5xx, or the identity endpoint
answered 429 (with its ``Retry-After`` in ``retry_after``), so that the client
retries the token request as it retries queries; not when the request was refused (an
OAuth error such as ``invalid_client``, an authority msal rejects, a
certificate the configured trust does not accept, a proxy refusing the
tunnel).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
import structlog

from runner.errors import AuthError
from runner.limiter.retry_after import parse_retry_after
from runner.network import (
    ProxySettings,
    TimeoutSession,
    describe_tls_failure,
    redact,
)
from runner.secrets import Secret

log = structlog.get_logger(__name__)

_SSL_REASON = re.compile(r"certificate verify failed: ([^(\'\"]+)")
_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: ([^'\")]+)")
_OS_ERROR = re.compile(r"\[Errno -?\d+\][^'\")]+")
_POOL_TARGET = re.compile(r"host='([^']+)', port=(\d+)")


@dataclass(frozen=True)
class ClientCredential:
    """What the application proves itself with: a secret or a certificate."""

    secret: Secret | None = None
    private_key_pem: Secret | None = None
    certificate_pem: bytes | None = None
    thumbprint: str | None = None

    def for_msal(self) -> str | dict[str, str]:
        if self.secret is not None:
            return self.secret.reveal()
        if self.private_key_pem is None or self.thumbprint is None:
            raise ValueError(
                "a certificate credential needs a private key and thumbprint"
            )
        credential = {
            "private_key": self.private_key_pem.reveal(),
            "thumbprint": self.thumbprint,
        }
        if self.certificate_pem is not None:
            # Sends x5c, which subject-name/issuer authentication needs.
            credential["public_certificate"] = self.certificate_pem.decode("ascii")

        return credential


def http_session(
    *,
    verify: bool | str,
    proxy: ProxySettings,
    authority: str,
    connect_timeout: float = 10.0,
    read_timeout: float = 240.0,
) -> requests.Session:
    """The requests session msal talks through.

    ``trust_env`` is off so that ``REQUESTS_CA_BUNDLE`` cannot override our
    ``verify``; the environment's proxy settings (``NO_PROXY`` included) are
    therefore applied here, explicitly, unless the tenant names its own proxy.
    """
    session = TimeoutSession(connect_timeout, read_timeout)
    session.trust_env = False
    session.verify = verify
    session.proxies = proxy.for_requests(authority)
    session.hooks["response"].append(_raise_for_server_error)

    return session


def _raise_for_server_error(response: requests.Response, *_: Any, **__: Any) -> None:
    # msal keeps a 5xx or 429 answer for its Retry-After (5 s without one) and
    # hands it back, without a request, to every token request in that time
    # (AzureAD/microsoft-authentication-library-for-python#379), so a retry
    # would only see the same failure; a 429 would also come back as an OAuth
    # error, refused for good. Raised here, it never reaches that cache, and
    # each retry sends a real request.
    if response.status_code >= 500 or response.status_code == 429:
        response.close()
        raise requests.HTTPError(
            f"{response.status_code} {response.reason}", response=response
        )


class TokenProvider:
    """Bearer tokens for one tenant and one API scope."""

    def __init__(
        self,
        tenant: str,
        *,
        client_id: str,
        credential: ClientCredential,
        authority: str,
        scope: str,
        verify: bool | str = True,
        proxy: ProxySettings | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 240.0,
    ) -> None:
        self.tenant = tenant
        self.scope = scope
        self._session = http_session(
            verify=verify,
            proxy=proxy or ProxySettings(),
            authority=authority,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # msal fetches the authority's discovery document in its constructor,
        # a blocking call: the application is built on first use, in a thread.
        self._build = lambda: msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential.for_msal(),
            authority=authority,
            http_client=self._session,
            # msal applies its own ``timeout`` only to a session it builds;
            # ours carries the timeouts (see TimeoutSession).
            instance_discovery=False,
        )
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A valid access token, from msal's cache when it has one."""
        async with self._lock:
            return await asyncio.to_thread(self._acquire)

    async def refresh(self) -> str:
        """Drop the cached token and get a new one (after a 401)."""
        async with self._lock:
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)
            log.info("auth.token_refreshed", tenant=self.tenant)

            return await asyncio.to_thread(self._acquire)

    def _acquire(self) -> str:
        try:
            if self._app is None:
                self._app = self._build()
            result: dict[str, Any] = self._app.acquire_token_for_client(
                scopes=[self.scope]
            )
        except requests.exceptions.SSLError as error:
            raise AuthError(self.tenant, "tls", _describe_tls(error)) from error
        except requests.exceptions.ProxyError as error:
            proxy = self._session.proxies.get("https", "")
            status = _tunnel_status(error)
            raise AuthError(
                self.tenant,
                "proxy",
                _describe_proxy(error, redact(proxy)),
                # Unreachable, or a 5xx for a host it could not reach: transient.
                retryable=status is None or status.startswith("5"),
            ) from error
        except requests.HTTPError as error:
            throttled = error.response is not None and error.response.status_code == 429
            raise AuthError(
                self.tenant,
                "throttled" if throttled else "server_error",
                f"the identity endpoint answered HTTP {error}",
                retryable=True,
                retry_after=(
                    parse_retry_after(error.response.headers) if throttled else None
                ),
            ) from error
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            # A reset, a refused connection or a timeout.
            raise AuthError(
                self.tenant, "unreachable", _describe(error), retryable=True
            ) from error
        except (requests.RequestException, ValueError) as error:
            # msal raises ValueError for an authority it rejects and for an
            # answer that is not JSON.
            raise AuthError(self.tenant, "unreachable", _describe(error)) from error
        if "access_token" not in result:
            raise AuthError(
                self.tenant,
                str(result.get("error", "unknown_error")),
                str(result.get("error_description", "no description")).splitlines()[0],
            )

        return str(result["access_token"])

    def close(self) -> None:
        self._session.close()


def _describe(error: Exception) -> str:
    text = str(error)

    return text.splitlines()[0] if text else type(error).__name__


def _describe_tls(error: requests.exceptions.SSLError) -> str:
    """Which host refused our trust, and why, from the chain requests wraps."""
    host, port = _target(error)
    cause = _find_cause(error, ssl.SSLCertVerificationError)
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or str(cause)
    else:
        match = _SSL_REASON.search(str(error))
        detail = match.group(1).strip() if match else _describe(error)

    return describe_tls_failure(host, port, detail)


def _tunnel_status(error: requests.exceptions.ProxyError) -> str | None:
    """The proxy's answer to CONNECT (``407 Proxy ...``), if it gave one."""
    match = _TUNNEL_STATUS.search(str(error))

    return match.group(1).strip() if match else None


def _describe_proxy(error: requests.exceptions.ProxyError, proxy: str) -> str:
    status = _tunnel_status(error)
    if status is None:
        reason = _OS_ERROR.search(str(error))
        detail = reason.group(0).strip() if reason else _describe(error)
        return f"cannot reach the proxy {proxy}: {detail}"
    hint = ""
    if status.startswith("407"):
        hint = " (check proxy_username and proxy_password_env/proxy_password_file)"

    return f"the proxy {proxy} refused the tunnel: {status}{hint}"


def _target(error: requests.RequestException) -> tuple[str, int | None]:
    request = error.request
    if request is not None and request.url:
        parts = urlsplit(str(request.url))
        return parts.hostname or "?", parts.port or 443
    match = _POOL_TARGET.search(str(error))
    if match:
        return match.group(1), int(match.group(2))

    return "?", None


def _find_cause(
    error: BaseException, kind: type[BaseException]
) -> BaseException | None:
    """The first exception of *kind* among *error*'s causes and wrapped reasons."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        # urllib3 keeps the original error in ``reason`` and in ``args``.
        pending.extend(current.args)
        pending.extend(
            (getattr(current, "reason", None), current.__cause__, current.__context__)
        )

    return None
