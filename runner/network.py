"""How hunt-runner reaches the network: trust, proxies and timeouts, in one place.

The API client (aiohttp), the token requests (requests under msal) and the
sinks that speak HTTP or TLS all build their settings here, so that one
tenant's or sink's ``ca_bundle``, ``ca_mode``, ``verify_tls`` and ``proxy``
mean the same thing on every path.

Trust: ``ca_mode: add`` trusts the system store plus ``ca_bundle``;
``ca_mode: replace`` trusts only ``ca_bundle``. requests takes one file for
``verify``, so for ``add`` a combined PEM (system store, or certifi's bundle
when the system has no single file, plus the bundle) is written once per
process to a private temporary file.

Proxies: without a ``proxy`` setting the environment decides (``HTTPS_PROXY``,
``HTTP_PROXY`` and ``NO_PROXY``, in either case), per target URL. A ``proxy``
URL overrides the environment; ``proxy: direct`` connects directly whatever
the environment says. Proxy credentials are a ``Secret`` until the moment a
request is built, and are never part of a logged URL.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import certifi
import requests

from runner.secrets import Secret

__all__ = [
    "CA_MODES",
    "DIRECT",
    "ProxySettings",
    "TimeoutSession",
    "combined_bundle",
    "describe_tls_failure",
    "environment_proxy",
    "proxy_problem",
    "proxy_settings",
    "redact",
    "requests_verify",
    "ssl_context",
    "tls_context",
]

CA_MODES = ("add", "replace")

# The ``proxy`` value that turns proxies off for one tenant or sink.
DIRECT = "direct"

_combined_lock = threading.Lock()
_combined: dict[str, str] = {}


def ssl_context(
    ca_bundle: str | Path | None, mode: str = "add", verify: bool = True
) -> ssl.SSLContext | bool:
    """The TLS settings for aiohttp's ``ssl=``: ``False`` when *verify* is off.

    Otherwise a context trusting the system store plus *ca_bundle* (``add``)
    or only *ca_bundle* (``replace``). A raw TLS socket needs ``tls_context``
    instead: there, ``ssl=False`` would mean no TLS at all.
    """
    if not verify:
        return False

    return tls_context(ca_bundle, mode, verify)


def tls_context(
    ca_bundle: str | Path | None, mode: str = "add", verify: bool = True
) -> ssl.SSLContext:
    """A client TLS context with the same trust, for sockets (syslog over TLS).

    With *verify* off the context still encrypts but accepts any certificate
    and host name. An unreadable bundle raises ``ssl.SSLError`` or
    ``OSError``; configuration loading has checked it already.
    """
    _check_mode(mode)
    if ca_bundle and mode == "replace":
        context = ssl.create_default_context(cafile=str(ca_bundle))
    else:
        context = ssl.create_default_context()
        if ca_bundle:
            context.load_verify_locations(cafile=str(ca_bundle))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    return context


def requests_verify(
    ca_bundle: str | Path | None, mode: str = "add", verify: bool = True
) -> bool | str:
    """The ``verify`` value for a requests session with the same meaning.

    For ``add`` this is the path of a combined PEM file, written on first use
    and reused for the rest of the process.
    """
    if not verify:
        return False
    _check_mode(mode)
    if not ca_bundle:
        # The system store, as aiohttp trusts; requests alone would use certifi
        # and miss a corporate CA installed system-wide.
        return _system_store()
    if mode == "replace":
        return str(ca_bundle)

    return combined_bundle(ca_bundle)


def combined_bundle(ca_bundle: str | Path) -> str:
    """A private PEM file holding the system's trusted CAs and then *ca_bundle*."""
    key = str(Path(ca_bundle).resolve())
    with _combined_lock:
        if key in _combined:
            return _combined[key]

        pem = _system_pem() + b"\n" + Path(key).read_bytes()
        # mkstemp creates the file readable and writable by the owner only.
        descriptor, name = tempfile.mkstemp(prefix="hunt-runner-ca-", suffix=".pem")
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        atexit.register(_remove, name)
        _combined[key] = name

        return name


def _system_store() -> bool | str:
    paths = ssl.get_default_verify_paths()
    if paths.cafile and Path(paths.cafile).is_file():
        return paths.cafile
    if paths.capath and Path(paths.capath).is_dir():
        return paths.capath

    return True


def _system_pem() -> bytes:
    # aiohttp trusts OpenSSL's default locations; use the same file when there
    # is one, and certifi's bundle (requests' own default) when there is not.
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and Path(cafile).is_file():
        return Path(cafile).read_bytes()

    return Path(certifi.where()).read_bytes()


def _remove(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _check_mode(mode: str) -> None:
    if mode not in CA_MODES:
        raise ValueError(f"ca_mode {mode!r} is not one of {', '.join(CA_MODES)}")


@dataclass(frozen=True)
class ProxySettings:
    """Which proxy to use, if any: explicit, none (``direct``), or the environment.

    ``url`` holds no credentials; ``username`` and ``password`` are sent as
    ``Proxy-Authorization: Basic`` to an explicit proxy. The header is built
    by hand because aiohttp deprecates both ``BasicAuth`` and ``proxy_auth``.
    """

    url: str | None = None
    direct: bool = False
    username: str | None = None
    password: Secret | None = None

    @property
    def source(self) -> str:
        """Where the proxy comes from, for logs: ``setting``, ``direct`` or ``env``."""
        if self.direct:
            return "direct"

        return "setting" if self.url else "env"

    def for_aiohttp(self, target: str) -> tuple[str | None, dict[str, str] | None]:
        """``proxy`` and ``proxy_headers`` for an aiohttp request to *target*.

        The headers carry ``Proxy-Authorization`` when there are credentials.
        """
        if self.direct:
            return None, None
        if self.url:
            if self.username is None:
                return self.url, None
            password = self.password.reveal() if self.password else ""
            return self.url, _authorization(self.username, password)

        url = environment_proxy(target)
        if url is None:
            return None, None
        bare, username, password = _split_credentials(url)
        if username is None:
            return bare, None

        return bare, _authorization(username, password)

    def for_requests(self, target: str) -> dict[str, str]:
        """The ``proxies`` mapping for a requests session talking to *target*.

        Credentials are put into the proxy URL here, in memory only, because
        that is how requests takes them.
        """
        if self.direct:
            return {}
        if self.url:
            url = self.url
            if self.username is not None:
                password = self.password.reveal() if self.password else ""
                url = _with_credentials(url, self.username, password)
            return {"https": url, "http": url}

        return dict(requests.utils.get_environ_proxies(target))


def proxy_settings(
    proxy: str | None,
    *,
    username: str | None = None,
    password: Secret | None = None,
) -> ProxySettings:
    """The proxy settings for a ``proxy`` value as configured.

    ``None`` follows the environment; ``"direct"`` (or an empty string) uses no
    proxy at all; anything else is the proxy's ``http(s)://host:port`` URL.
    """
    if proxy is None:
        return ProxySettings()
    if proxy.strip().lower() in (DIRECT, ""):
        return ProxySettings(direct=True)

    return ProxySettings(url=proxy, username=username, password=password)


def proxy_problem(proxy: str, password_keys: str) -> str | None:
    """What is wrong with a configured *proxy* URL, or None when it can work.

    The URL must be ``http(s)://host:port`` with a port from 1 to 65535 and
    no credentials; *password_keys* names the settings that take the
    password instead, for the message. A URL with credentials is never
    repeated in the message.
    """
    if "@" in proxy.partition("://")[2].partition("/")[0]:
        # Checked first, so that no other message repeats the password.
        return (
            "credentials in the proxy URL are not accepted; use proxy_username "
            f"with {password_keys}"
        )
    try:
        parts = urlsplit(proxy)
    except ValueError:  # an unclosed IPv6 bracket
        return f"{proxy!r} has an invalid host; write http(s)://host:port"
    if parts.scheme not in ("http", "https"):
        return f"{proxy!r} is not an http(s):// URL"
    if not (parts.hostname or "").strip():
        return f"{proxy!r} has no host; write http(s)://host:port"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"{proxy!r} has an invalid port; give one from 1 to 65535"

    return None


def environment_proxy(target: str) -> str | None:
    """The proxy URL the environment names for *target*, honouring ``NO_PROXY``.

    requests decides, as it does for the token requests, so that a ``NO_PROXY``
    entry (an address range such as ``10.0.0.0/8`` included) means the same on
    both paths.
    """
    proxies = requests.utils.get_environ_proxies(target)
    url = requests.utils.select_proxy(target, proxies)
    if not url:
        return None

    return url if "://" in url else f"http://{url}"


def _split_credentials(url: str) -> tuple[str, str | None, str]:
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, ""
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    return bare, unquote(parts.username), unquote(parts.password or "")


def _with_credentials(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    netloc = f"{userinfo}@{parts.netloc.rpartition('@')[2]}"

    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _authorization(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    return {"Proxy-Authorization": f"Basic {token}"}


def redact(url: str) -> str:
    """*url* without any credentials, for logs and error messages."""
    return _split_credentials(url)[0]


class TimeoutSession(requests.Session):
    """A requests session with a default ``(connect, read)`` timeout.

    msal takes a ``timeout`` only for the session it builds itself; given our
    own session it sends requests without one, so the default lives here.
    """

    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        super().__init__()
        self.timeout = (connect_timeout, read_timeout)

    # The stubs spell out every keyword of requests; only the timeout matters.
    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, **kwargs: Any
    ) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout

        return super().request(method, url, **kwargs)


def describe_tls_failure(host: str, port: int | None, detail: str) -> str:
    """The message for a certificate the configured trust does not accept."""
    where = f"{host}:{port}" if port else host

    return (
        f"TLS certificate verification failed at {where}: {detail} "
        "(check ca_bundle and ca_mode, or the proxy's TLS inspection CA)"
    )
