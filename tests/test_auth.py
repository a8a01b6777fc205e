"""Token requests through real msal: transient failures retried, permanent ones not.

The identity endpoint here is a small HTTPS server on loopback that stands in
front of the sandbox's: it fails the first token requests as scripted (a
reset, a 503, a slow answer) and forwards the rest, so the tokens it hands
out are the sandbox's own and the queries after them are real.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType

import aiohttp
import pytest
import stamina
from aiohttp import web
from helpers_proxy import ConnectProxy

from runner import clouds, network
from runner.auth import ClientCredential, TokenProvider
from runner.client import HuntingClient
from runner.errors import AuthError
from runner.sandbox import Sandbox, SandboxSettings
from runner.sandbox.certs import ServerCertificates, make_server_certificates
from runner.secrets import Secret

QUERY = "DeviceInfo | take 3"


class FlakyIdentity:
    """``async with FlakyIdentity(sandbox, certificates, faults)``: ``url``, counts.

    Each token request takes the next of *faults* (``reset``, ``slow`` or an
    HTTP status such as ``"503"``); once they are used up, token requests are
    forwarded to the sandbox. Discovery is forwarded with the sandbox's
    address replaced by ours, so that msal sends its token requests here.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        certificates: ServerCertificates,
        faults: Sequence[str] = (),
    ) -> None:
        self.sandbox = sandbox
        self.certificates = certificates
        self.faults = list(faults)
        self.requests = 0
        self.token_requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FlakyIdentity:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._forward_discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            "localhost",
            0,
            ssl_context=self.certificates.server_context(),
        )
        await site.start()
        self.url = f"https://localhost:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _forward_discovery(self, request: web.Request) -> web.Response:
        self.requests += 1
        status, text = await self._upstream("GET", request.path_qs, request)

        return web.Response(
            status=status,
            text=text.replace(self.sandbox.base_url, self.url),
            content_type="application/json",
        )

    async def _token(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.token_requests += 1
        body = await request.read()
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "reset":
            _reset(request)
            return web.Response(status=500)
        if fault == "slow":
            await asyncio.sleep(1.5)
        elif fault != "ok":
            return web.Response(status=int(fault), text="<html>busy</html>")
        status, text = await self._upstream("POST", request.path, request, body)

        return web.Response(status=status, text=text, content_type="application/json")

    async def _upstream(
        self, method: str, path: str, request: web.Request, body: bytes = b""
    ) -> tuple[int, str]:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                self.sandbox.base_url + path,
                data=body or None,
                headers=headers,
                ssl=self.sandbox.client_ssl_context(),
            ) as answer,
        ):
            return answer.status, await answer.text()


def _reset(request: web.Request) -> None:
    transport = request.transport
    assert transport is not None
    raw = transport.get_extra_info("socket")
    # A zero linger turns the close into a TCP reset.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    settings = SandboxSettings.from_mapping({"days": 0.1, "live_arrival": False})
    async with Sandbox(settings) as running:
        yield running


@pytest.fixture
def certificates(tmp_path: Path) -> ServerCertificates:
    return make_server_certificates(tmp_path / "identity")


def _tokens(
    sandbox: Sandbox,
    authority: str,
    verify: str,
    *,
    client_id: str | None = None,
    secret: Secret | None = None,
    proxy: network.ProxySettings | None = None,
) -> TokenProvider:
    return TokenProvider(
        "lab",
        client_id=client_id or sandbox.demo.client_id,
        credential=ClientCredential(secret=secret or sandbox.demo.client_secret),
        authority=authority,
        scope=clouds.resolve("commercial", "graph", "x").scope,
        verify=verify,
        proxy=proxy,
        connect_timeout=2.0,
        read_timeout=0.5,
    )


async def _query(sandbox: Sandbox, tokens: TokenProvider) -> int:
    """Runs QUERY against the sandbox with *tokens*; the rows it returned."""
    endpoints = clouds.resolve(
        "commercial",
        "graph",
        sandbox.demo.tenant_id,
        authority="https://unused.example.net/x",
        api_base=sandbox.base_url,
    )
    try:
        async with aiohttp.ClientSession() as session:
            client = HuntingClient(
                "lab",
                endpoints=endpoints,
                tokens=tokens,
                session=session,
                ssl=network.ssl_context(sandbox.ca_path, "replace"),
                max_retries=3,
            )
            with stamina.set_testing(True, attempts=10, cap=True):
                outcome = await client.query(QUERY)
    finally:
        tokens.close()

    return len(outcome.result.rows)


@pytest.mark.parametrize(
    "faults",
    [("reset",), ("503",), ("500", "502"), ("slow",), ("reset", "504", "slow")],
)
async def test_transient_token_failures_are_retried(
    sandbox: Sandbox, certificates: ServerCertificates, faults: tuple[str, ...]
) -> None:
    """A reset, a 5xx or a timeout of the token request is retried, then queried."""
    async with FlakyIdentity(sandbox, certificates, faults) as identity:
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(sandbox, authority, str(certificates.ca_path))
        rows = await _query(sandbox, tokens)

    assert rows == 3
    assert identity.token_requests == len(faults) + 1


async def test_token_retries_are_bounded_by_max_retries(
    sandbox: Sandbox, certificates: ServerCertificates
) -> None:
    """An identity endpoint that keeps failing gets max_retries more tries, no more."""
    async with FlakyIdentity(sandbox, certificates, ["503"] * 10) as identity:
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(sandbox, authority, str(certificates.ca_path))
        with pytest.raises(AuthError) as caught:
            await _query(sandbox, tokens)

    assert identity.token_requests == 4
    assert str(caught.value) == (
        "tenant lab: token request failed: server_error: the identity endpoint "
        "answered HTTP 503 Service Unavailable"
    )


@pytest.mark.parametrize(
    ("credential", "code", "detail"),
    [
        ("wrong-secret", "invalid_client", "AADSTS7000215"),
        ("unknown-client", "unauthorized_client", "AADSTS700016"),
    ],
)
async def test_refused_credentials_fail_at_once(
    sandbox: Sandbox,
    certificates: ServerCertificates,
    credential: str,
    code: str,
    detail: str,
) -> None:
    """invalid_client and unauthorized_client fail after one token request."""
    async with FlakyIdentity(sandbox, certificates) as identity:
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        if credential == "wrong-secret":
            tokens = _tokens(
                sandbox,
                authority,
                str(certificates.ca_path),
                secret=Secret("not-the-secret-46", "test"),
            )
        else:
            tokens = _tokens(
                sandbox,
                authority,
                str(certificates.ca_path),
                client_id="00000000-0000-0000-0000-00000000dead",
            )
        with pytest.raises(AuthError) as caught:
            await _query(sandbox, tokens)

    assert identity.token_requests == 1
    assert caught.value.code == code
    assert str(caught.value).startswith(
        f"tenant lab: token request failed: {code}: {detail}"
    )
    assert "not-the-secret-46" not in str(caught.value)


async def test_authority_without_tenant_fails_at_once(
    sandbox: Sandbox, certificates: ServerCertificates
) -> None:
    """An authority msal refuses fails before any request, with msal's reason."""
    async with FlakyIdentity(sandbox, certificates) as identity:
        tokens = _tokens(sandbox, identity.url, str(certificates.ca_path))
        with pytest.raises(AuthError) as caught:
            await _query(sandbox, tokens)

    assert identity.requests == 0
    assert str(caught.value).startswith(
        f"tenant lab: token request failed: unreachable: Your given address "
        f"({identity.url}) should consist of an https url"
    )


async def test_untrusted_identity_certificate_fails_at_once(
    sandbox: Sandbox, certificates: ServerCertificates, tmp_path: Path
) -> None:
    """A TLS verification failure on the token request is not retried."""
    other = make_server_certificates(tmp_path / "other")
    async with (
        FlakyIdentity(sandbox, certificates) as identity,
        ConnectProxy() as proxy,
    ):
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(
            sandbox,
            authority,
            str(other.ca_path),
            proxy=network.proxy_settings(proxy.url),
        )
        with pytest.raises(AuthError) as caught:
            await _query(sandbox, tokens)

    # Through a proxy, each attempt is one CONNECT: there was only one.
    assert sum(proxy.connects.values()) == 1
    assert caught.value.code == "tls"
    assert "TLS certificate verification failed at localhost:" in str(caught.value)


@pytest.mark.parametrize(
    "answers", [("503 Service Unavailable",), ("close",), ("close", "502 Bad Gateway")]
)
async def test_proxy_failing_to_tunnel_a_token_request_is_retried(
    sandbox: Sandbox, certificates: ServerCertificates, answers: tuple[str, ...]
) -> None:
    """A proxy that drops a CONNECT or answers it with a 5xx gets another try."""
    async with (
        FlakyIdentity(sandbox, certificates) as identity,
        ConnectProxy(answers=answers) as proxy,
    ):
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(
            sandbox,
            authority,
            str(certificates.ca_path),
            proxy=network.proxy_settings(proxy.url),
        )
        rows = await _query(sandbox, tokens)

    assert rows == 3
    assert sum(proxy.refused.values()) == len(answers)
    assert identity.token_requests == 1


async def test_proxy_refusing_a_token_request_fails_at_once(
    sandbox: Sandbox, certificates: ServerCertificates
) -> None:
    """A proxy answering CONNECT with a 4xx fails the token request, naming it."""
    async with (
        FlakyIdentity(sandbox, certificates) as identity,
        ConnectProxy(answers=["403 Forbidden"] * 5) as proxy,
    ):
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(
            sandbox,
            authority,
            str(certificates.ca_path),
            proxy=network.proxy_settings(proxy.url),
        )
        with pytest.raises(AuthError) as caught:
            await _query(sandbox, tokens)

    assert sum(proxy.refused.values()) == 1
    assert str(caught.value) == (
        f"tenant lab: token request failed: proxy: the proxy {proxy.url} refused "
        "the tunnel: 403 Forbidden"
    )


@pytest.mark.parametrize("faults", [("429",), ("429", "429")])
async def test_throttled_token_requests_are_retried(
    sandbox: Sandbox, certificates: ServerCertificates, faults: tuple[str, ...]
) -> None:
    """A 429 from the identity endpoint is retried like a 5xx, then queried."""
    async with FlakyIdentity(sandbox, certificates, faults) as identity:
        authority = f"{identity.url}/{sandbox.demo.tenant_id}"
        tokens = _tokens(sandbox, authority, str(certificates.ca_path))
        rows = await _query(sandbox, tokens)

    assert rows == 3
    assert identity.token_requests == len(faults) + 1
