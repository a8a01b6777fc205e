"""The error tree of hunt-runner.

Every exception the package raises on purpose derives from ``HuntRunnerError``;
third-party exceptions (aiohttp, msal, sqlite3, yaml) are translated where they
are caught and never leak further::

    HuntRunnerError
    ├── ConfigError            a configuration or hunt file is wrong (file, line, key)
    ├── AuthError              no token: bad credentials, unreachable identity endpoint
    │                          (retryable when a reset, timeout, 5xx or 429 caused it)
    ├── ApiError               the hunting API answered with an error (status, code)
    │   ├── QueryError         400: the query itself is wrong; never retried as-is
    │   ├── UnauthorizedError  401: token expired or for another audience
    │   ├── ForbiddenError     403: the application lacks the endpoint's role
    │   ├── ThrottledError     429: a call or CPU quota is exhausted (retry_after)
    │   └── ServerError        5xx: transient on the service side
    ├── TransportError         no usable answer: reset, timeout, malformed body
    │   ├── TlsError           the peer's certificate was not trusted; not retried
    │   └── ProxyRefusedError  the proxy refused the tunnel (407, 403); not retried
    ├── StateError             the state database cannot be read or written
    └── SinkError              a sink could not take a batch
"""

from __future__ import annotations

from dataclasses import dataclass


class HuntRunnerError(Exception):
    """Base of every error hunt-runner raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, reported as ``file:line: message``.

    A ``warning`` is reported as ``file:line: warning: message`` and is no
    reason to refuse the file.
    """

    path: str
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""

        return f"{self.path}:{self.line}: {kind}{self.message}"


class ConfigError(HuntRunnerError):
    """Configuration or hunt files are wrong; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class AuthError(HuntRunnerError):
    """A token could not be acquired for a tenant.

    ``retryable`` is set when the identity endpoint could not answer (a reset,
    a timeout, a 5xx) or asked us to wait (a 429, its ``Retry-After`` in
    ``retry_after`` seconds) rather than refused: the same request may
    succeed later.
    """

    def __init__(
        self,
        tenant: str,
        code: str,
        description: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.tenant = tenant
        self.code = code
        self.description = description
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(
            f"tenant {tenant}: token request failed: {code}: {description}"
        )


class ApiError(HuntRunnerError):
    """The hunting API answered a call with an error status."""

    def __init__(
        self, tenant: str, status: int, code: str, message: str, *, hunt: str = ""
    ) -> None:
        self.tenant = tenant
        self.hunt = hunt
        self.status = status
        self.code = code
        self.message = message
        where = f"hunt {hunt}, tenant {tenant}" if hunt else f"tenant {tenant}"
        # The call quota's 429 carries its status again as the code ("429").
        shown = (
            f"HTTP {status}" if code in ("", str(status)) else f"HTTP {status} {code}"
        )
        super().__init__(f"{where}: {shown}: {message}")


class QueryError(ApiError):
    """The service rejected the query (400); retrying it unchanged cannot help."""


class UnauthorizedError(ApiError):
    """The token was refused (401)."""


class ForbiddenError(ApiError):
    """The application lacks the role the endpoint requires (403)."""


class ThrottledError(ApiError):
    """A quota is exhausted (429).

    ``window`` is the call window the body names (``"00:01:00"``) or ``None``
    when the body does not name one, which means a CPU quota or an unknown kind.
    """

    def __init__(
        self,
        tenant: str,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None,
        window: str | None,
        limit: int | None,
        hunt: str = "",
    ) -> None:
        super().__init__(tenant, status, code, message, hunt=hunt)
        self.retry_after = retry_after
        self.window = window
        self.limit = limit


class ServerError(ApiError):
    """The service failed on its side (5xx)."""


class TransportError(HuntRunnerError):
    """The call produced no usable answer: reset, timeout, TLS or a broken body."""

    def __init__(self, tenant: str, reason: str) -> None:
        self.tenant = tenant
        self.reason = reason
        super().__init__(f"tenant {tenant}: {reason}")


class TlsError(TransportError):
    """TLS verification failed: a wrong CA bundle or an intercepting proxy."""


class ProxyRefusedError(TransportError):
    """The proxy answered CONNECT with a 4xx: wrong credentials or not allowed."""


class StateError(HuntRunnerError):
    """The state database could not be read or written."""


class SinkError(HuntRunnerError):
    """A sink could not take a batch; ``retryable`` says whether to try again."""

    def __init__(self, sink: str, message: str, *, retryable: bool = True) -> None:
        self.sink = sink
        self.retryable = retryable
        super().__init__(f"sink {sink}: {message}")
