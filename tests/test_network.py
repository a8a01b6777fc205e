"""Network settings end to end: proxies, private CAs, explicit endpoints, timeouts.

Every test goes over real sockets: the sandbox serves HTTPS on loopback, the
proxy is a real CONNECT proxy (``helpers_proxy``), and the daemon's
``Runtime`` is built from configuration files exactly as in production. The
token requests go to ``localhost`` and the queries to ``127.0.0.1`` (the
sandbox certificate names both), so the proxy's per-target counts show which
of the two paths went through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import stamina
from helpers_proxy import ConnectProxy
from structlog.testing import capture_logs

from runner import clouds, network
from runner.auth import ClientCredential, TokenProvider
from runner.client import HuntingClient
from runner.config import load_config
from runner.daemon import Runtime
from runner.errors import AuthError, HuntRunnerError, TlsError
from runner.executor import RunResult
from runner.hunts import load_hunts
from runner.sandbox import Sandbox, SandboxSettings
from runner.sandbox.certs import make_server_certificates
from runner.secrets import Secret
from runner.validate import validate_paths

HUNT = """\
id: recent-processes
name: Recent processes
schedule:
  every: 15m
lookback: 1h
delay: 0m
query: |
  DeviceProcessEvents
  | where Timestamp between (HuntStart .. HuntEnd)
  | take 5
"""

_PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


class _SandboxThread:
    """The sandbox on its own loop in a thread, shared by every test here."""

    def __init__(self) -> None:
        self.sandbox = Sandbox(
            SandboxSettings(days=0.5, events_per_hour=300, live_arrival=False)
        )
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sandbox:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self.sandbox

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with self.sandbox:
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:  # handed to the waiting test thread
            self._error = error
            self._ready.set()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the module: half a day of telemetry, no faults."""
    with _SandboxThread() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable from the machine running the tests leaks in."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def secret_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo client's secret in an environment variable, as a user sets it."""
    monkeypatch.setenv("LAB_CLIENT_SECRET", sandbox.demo.client_secret.reveal())
    return "LAB_CLIENT_SECRET"


def _tenant_yaml(
    sandbox: Sandbox, name: str, *, ca_bundle: Path | str, extra: str = ""
) -> str:
    """A commercial tenant pointed at the sandbox by explicit URLs."""
    lines = [
        f"  {name}:",
        "    cloud: commercial",
        f"    tenant_id: {sandbox.demo.tenant_id}",
        f"    client_id: {sandbox.demo.client_id}",
        "    secret_env: LAB_CLIENT_SECRET",
        f"    authority: {sandbox.base_url}/{sandbox.demo.tenant_id}",
        f"    api_base: https://127.0.0.1:{sandbox.port}",
        f"    ca_bundle: {ca_bundle}",
        "    limits:",
        "      max_retries: 0",
    ]
    lines.extend(f"    {line}" for line in extra.strip().splitlines())

    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, tenants: str) -> tuple[Path, Path]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "hunt-runner.yaml").write_text(
        f"tenants:\n{tenants}state:\n  path: {tmp_path / 'state' / 'db.sqlite'}\n",
        encoding="utf-8",
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "recent-processes.yaml").write_text(HUNT, encoding="utf-8")

    return config, jobs


async def _run_once(tmp_path: Path, tenants: str) -> dict[str, RunResult]:
    config, jobs = _write(tmp_path, tenants)
    settings, problems = load_config(config)
    assert settings is not None, problems
    hunts, problems = load_hunts([jobs], settings.hunt_defaults)
    assert not problems
    async with Runtime(settings, hunts) as runtime:
        results = await asyncio.wait_for(runtime.run_once(drain_timeout=5.0), 30.0)

    return {result.tenant: result for result in results}


def _targets(sandbox: Sandbox) -> tuple[str, str]:
    return f"localhost:{sandbox.port}", f"127.0.0.1:{sandbox.port}"


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ------------------------------------------------------------------ proxies


async def test_environment_proxy_carries_token_and_query(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY in the environment takes both the token and the query requests."""
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        results = await _run_once(
            tmp_path, _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path)
        )

    token_target, query_target = _targets(sandbox)
    assert results["lab"].ok, results["lab"].error
    assert results["lab"].rows > 0
    assert proxy.connects[token_target] >= 1
    assert proxy.connects[query_target] >= 1


async def test_no_proxy_bypasses_the_environment_proxy(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts named in NO_PROXY are reached directly by both request paths."""
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        results = await _run_once(
            tmp_path, _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path)
        )

    assert results["lab"].ok, results["lab"].error
    assert sum(proxy.connects.values()) == 0


async def test_no_proxy_cidr_bypasses_the_proxy_for_queries_too(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NO_PROXY address range sends queries direct, as it does token requests."""
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
        results = await _run_once(
            tmp_path, _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path)
        )

    assert results["lab"].ok, results["lab"].error
    assert dict(proxy.connects) == {}


async def test_tenant_proxy_with_credentials_overrides_the_environment(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's proxy, with basic credentials, wins over a dead HTTPS_PROXY."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_unused_port()}")
    monkeypatch.setenv("LAB_PROXY_PASSWORD", "s3cret:with@odd/chars")
    async with ConnectProxy(credentials=("hunter", "s3cret:with@odd/chars")) as proxy:
        extra = f"""
proxy: {proxy.url}
proxy_username: hunter
proxy_password_env: LAB_PROXY_PASSWORD
"""
        results = await _run_once(
            tmp_path,
            _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path, extra=extra),
        )

    token_target, query_target = _targets(sandbox)
    assert results["lab"].ok, results["lab"].error
    assert proxy.connects[token_target] >= 1
    assert proxy.connects[query_target] >= 1
    assert sum(proxy.refused.values()) == 0


async def test_wrong_proxy_password_fails_with_a_clear_error(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy answering 407 fails the run with a message that names the setting."""
    monkeypatch.setenv("LAB_PROXY_PASSWORD", "pw-mistyped-41")
    async with ConnectProxy(credentials=("hunter", "pw-right-42")) as proxy:
        extra = f"""
proxy: {proxy.url}
proxy_username: hunter
proxy_password_env: LAB_PROXY_PASSWORD
"""
        with capture_logs() as events:
            results = await _run_once(
                tmp_path,
                _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path, extra=extra),
            )

    error = results["lab"].error or ""
    assert not results["lab"].ok
    assert "tenant lab" in error
    assert "407 Proxy Authentication Required" in error
    assert "proxy_password_env" in error
    assert "pw-mistyped-41" not in error
    assert proxy.refused[_targets(sandbox)[0]] >= 1
    assert "pw-mistyped-41" not in repr(events)


async def _query_through(
    sandbox: Sandbox, proxy: network.ProxySettings
) -> tuple[int, BaseException | None]:
    """One query whose token comes direct and whose call goes through *proxy*."""
    endpoints = clouds.resolve(
        "commercial",
        "graph",
        sandbox.demo.tenant_id,
        authority=f"{sandbox.base_url}/{sandbox.demo.tenant_id}",
        api_base=f"https://127.0.0.1:{sandbox.port}",
    )
    tokens = TokenProvider(
        "lab",
        client_id=sandbox.demo.client_id,
        credential=ClientCredential(secret=sandbox.demo.client_secret),
        authority=endpoints.authority,
        scope=endpoints.scope,
        verify=network.requests_verify(sandbox.ca_path, "replace"),
    )
    try:
        async with aiohttp.ClientSession() as session:
            client = HuntingClient(
                "lab",
                endpoints=endpoints,
                tokens=tokens,
                session=session,
                ssl=network.ssl_context(sandbox.ca_path, "replace"),
                proxy=proxy,
                max_retries=3,
            )
            with stamina.set_testing(True, attempts=10, cap=True):
                outcome = await client.query("DeviceInfo | take 1")
    except HuntRunnerError as error:
        return 0, error
    finally:
        tokens.close()

    return len(outcome.result.rows), None


async def test_proxy_answering_407_to_a_query_fails_at_once_naming_it(
    sandbox: Sandbox,
) -> None:
    """A 407 to the query's CONNECT is not retried; the error names tenant and proxy."""
    async with ConnectProxy(credentials=("hunter", "pw-right-42")) as proxy:
        settings = network.proxy_settings(
            proxy.url, username="hunter", password=Secret("pw-mistyped-41", "test")
        )
        with capture_logs() as events:
            rows, error = await _query_through(sandbox, settings)

    assert rows == 0
    assert str(error) == (
        f"tenant lab: the proxy {proxy.url} refused the tunnel: 407 Proxy "
        "Authentication Required (check proxy_username and "
        "proxy_password_env/proxy_password_file)"
    )
    assert dict(proxy.refused) == {_targets(sandbox)[1]: 1}
    assert "pw-mistyped-41" not in repr(events)


async def test_proxy_refusing_a_query_fails_at_once(sandbox: Sandbox) -> None:
    """A proxy answering the query's CONNECT with 403 fails the call at once."""
    async with ConnectProxy(answers=["403 Forbidden"] * 5) as proxy:
        rows, error = await _query_through(sandbox, network.proxy_settings(proxy.url))

    assert str(error) == (
        f"tenant lab: the proxy {proxy.url} refused the tunnel: 403 Forbidden"
    )
    assert sum(proxy.refused.values()) == 1


async def test_proxy_failing_to_tunnel_a_query_is_retried(sandbox: Sandbox) -> None:
    """A 5xx to the query's CONNECT (no way to the host yet) is retried."""
    async with ConnectProxy(answers=["502 Bad Gateway"]) as proxy:
        rows, error = await _query_through(sandbox, network.proxy_settings(proxy.url))

    assert error is None
    assert rows == 1
    assert sum(proxy.refused.values()) == 1
    assert proxy.connects[_targets(sandbox)[1]] == 1


async def test_direct_ignores_the_environment_proxy(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy: direct`` connects directly even when HTTPS_PROXY names a proxy."""
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        results = await _run_once(
            tmp_path,
            _tenant_yaml(
                sandbox, "lab", ca_bundle=sandbox.ca_path, extra="proxy: direct"
            ),
        )

    assert results["lab"].ok, results["lab"].error
    assert sum(proxy.connects.values()) == 0


async def test_sandbox_tenant_ignores_the_environment_proxy(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``cloud: sandbox`` tenant reaches the loopback sandbox despite HTTPS_PROXY."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_unused_port()}")
    config, jobs = _write(tmp_path, "  lab:\n    cloud: sandbox\n")
    settings, problems = load_config(config)
    assert settings is not None, problems
    hunts, _ = load_hunts([jobs], settings.hunt_defaults)

    async with Runtime(settings, hunts, sandbox=sandbox) as runtime:
        results = await asyncio.wait_for(runtime.run_once(drain_timeout=5.0), 30.0)

    assert [(r.tenant, r.ok) for r in results] == [("lab", True)], results


# ------------------------------------------------------ endpoints and trust


@pytest.mark.parametrize("backend", ["graph", "xdr", "mde"])
@pytest.mark.parametrize("ca_mode", ["add", "replace"])
async def test_explicit_endpoints_and_ca_bundle_reach_every_backend(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, backend: str, ca_mode: str
) -> None:
    """Explicit authority, api_base and ca_bundle work for each API and CA mode."""
    extra = f"backend: {backend}\nca_mode: {ca_mode}"
    results = await _run_once(
        tmp_path, _tenant_yaml(sandbox, "lab", ca_bundle=sandbox.ca_path, extra=extra)
    )

    assert results["lab"].ok, results["lab"].error
    assert results["lab"].rows > 0


async def test_system_store_is_trusted_by_token_and_query_requests_alike(
    sandbox: Sandbox, secret_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ca_bundle both paths trust the system store (here, SSL_CERT_FILE)."""
    # A corporate CA installed system-wide: the store OpenSSL reads by default.
    monkeypatch.setenv("SSL_CERT_FILE", str(sandbox.ca_path))
    tenant = "".join(
        line + "\n"
        for line in _tenant_yaml(sandbox, "lab", ca_bundle="-").splitlines()
        if "ca_bundle" not in line
    )

    results = await _run_once(tmp_path, tenant)

    assert results["lab"].ok, results["lab"].error
    assert results["lab"].rows > 0


async def test_wrong_ca_fails_that_tenant_and_the_others_keep_running(
    sandbox: Sandbox, secret_env: str, tmp_path: Path
) -> None:
    """A tenant trusting another CA fails with a TLS error naming it; others run."""
    other = make_server_certificates(tmp_path / "other-ca")
    tenants = _tenant_yaml(sandbox, "wrong", ca_bundle=other.ca_path, extra="")
    tenants += _tenant_yaml(sandbox, "right", ca_bundle=sandbox.ca_path)

    results = await _run_once(tmp_path, tenants)

    error = results["wrong"].error or ""
    assert not results["wrong"].ok
    assert "tenant wrong" in error
    assert f"TLS certificate verification failed at localhost:{sandbox.port}" in error
    assert "check ca_bundle" in error
    assert results["right"].ok, results["right"].error
    assert results["right"].rows > 0


async def test_wrong_ca_on_the_query_is_a_tls_error_naming_the_tenant(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """With a good token, a query to a host the CA does not vouch for is TlsError."""
    other = make_server_certificates(tmp_path / "other-ca")
    endpoints = clouds.resolve(
        "commercial",
        "graph",
        sandbox.demo.tenant_id,
        authority=f"{sandbox.base_url}/{sandbox.demo.tenant_id}",
        api_base=f"https://127.0.0.1:{sandbox.port}",
    )
    tokens = TokenProvider(
        "lab",
        client_id=sandbox.demo.client_id,
        credential=ClientCredential(secret=sandbox.demo.client_secret),
        authority=endpoints.authority,
        scope=endpoints.scope,
        verify=network.requests_verify(sandbox.ca_path, "replace"),
    )
    async with aiohttp.ClientSession() as session:
        client = HuntingClient(
            "lab",
            endpoints=endpoints,
            tokens=tokens,
            session=session,
            ssl=network.ssl_context(other.ca_path, "replace"),
            max_retries=0,
        )
        with pytest.raises(TlsError) as caught:
            await client.query("DeviceInfo | take 1")
    tokens.close()

    message = str(caught.value)
    assert caught.value.tenant == "lab"
    assert message.startswith("tenant lab: TLS certificate verification failed at ")
    assert f"127.0.0.1:{sandbox.port}" in message
    assert "check ca_bundle" in message


async def test_disabled_verification_works_and_warns_at_start(
    sandbox: Sandbox, secret_env: str, tmp_path: Path
) -> None:
    """``verify_tls: false`` reaches an untrusted host and logs a warning at start."""
    other = make_server_certificates(tmp_path / "other-ca")
    with capture_logs() as events:
        results = await _run_once(
            tmp_path,
            _tenant_yaml(
                sandbox, "lab", ca_bundle=other.ca_path, extra="verify_tls: false"
            ),
        )

    assert results["lab"].ok, results["lab"].error
    warnings = [e for e in events if e["event"] == "tenant.tls_verification_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["tenant"] == "lab"


def test_api_base_keeps_its_path_prefix() -> None:
    """An ``api_base`` with a path prefix keeps it in front of the query path."""
    endpoints = clouds.resolve(
        "commercial",
        "xdr",
        "contoso.com",
        authority="https://login.example.net/contoso.com/",
        api_base="https://gateway.example.net/defender/",
    )

    assert endpoints.query_url == (
        "https://gateway.example.net/defender/api/advancedhunting/run"
    )
    assert endpoints.authority == "https://login.example.net/contoso.com"
    assert endpoints.scope == "https://api.security.microsoft.com/.default"


# ------------------------------------------------------------- timeouts


async def test_token_request_honours_the_read_timeout(tmp_path: Path) -> None:
    """A silent identity endpoint fails the token request after ``read_timeout``."""
    accepted: list[socket.socket] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                accepted.append(connection)

    def hang_up() -> None:
        listener.close()
        for connection in accepted:
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    # Without a working timeout the request would block forever; hanging up
    # after a few seconds turns that into a failure of the assertion below.
    backstop = threading.Timer(5.0, hang_up)
    backstop.start()
    tokens = TokenProvider(
        "silent",
        client_id="00000000-0000-0000-0000-000000000001",
        credential=ClientCredential(secret=Secret("x", "test")),
        authority=f"https://127.0.0.1:{port}/contoso.com",
        scope="https://graph.microsoft.com/.default",
        connect_timeout=1.0,
        read_timeout=0.3,
    )
    started = time.monotonic()
    try:
        with pytest.raises(AuthError) as caught:
            await tokens.token()
    finally:
        backstop.cancel()
        tokens.close()
        hang_up()

    assert time.monotonic() - started < 3.0
    assert "tenant silent" in str(caught.value)
    assert "timed out" in str(caught.value).lower()


# --------------------------------------------------------- trust helpers


def test_add_mode_writes_one_private_combined_bundle(tmp_path: Path) -> None:
    """``add`` gives requests one 0600 file: the system CAs, then the bundle."""
    ca = make_server_certificates(tmp_path / "ca").ca_path

    first = network.requests_verify(ca, "add")
    second = network.requests_verify(str(ca), "add")

    assert isinstance(first, str)
    assert first == second
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    content = Path(first).read_bytes()
    assert content.endswith(ca.read_bytes())
    assert content.count(b"BEGIN CERTIFICATE") > 1
    assert network.requests_verify(ca, "replace") == str(ca)
    assert network.requests_verify(ca, "add", verify=False) is False
    # Without a bundle: the system store aiohttp trusts (certifi only if none).
    paths = ssl.get_default_verify_paths()
    assert network.requests_verify(None, "add") in (paths.cafile, paths.capath, True)


def test_trust_modes_decide_which_certificates_are_accepted(tmp_path: Path) -> None:
    """``replace`` trusts the bundle alone; ``add`` keeps the system store too."""
    ca = make_server_certificates(tmp_path / "ca").ca_path
    system_count = len(ssl.create_default_context().get_ca_certs())

    replaced = network.tls_context(ca, "replace")
    added = network.tls_context(ca, "add")
    unverified = network.tls_context(ca, "add", verify=False)

    assert len(replaced.get_ca_certs()) == 1
    assert len(added.get_ca_certs()) == system_count + 1
    assert unverified.verify_mode == ssl.CERT_NONE
    assert not unverified.check_hostname
    assert network.ssl_context(ca, "add", verify=False) is False
    with pytest.raises(ValueError, match="ca_mode 'merge'"):
        network.ssl_context(ca, "merge")


def test_environment_proxy_credentials_are_split_for_aiohttp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Credentials in HTTPS_PROXY become a Proxy-Authorization header, not URL."""
    monkeypatch.setenv("HTTPS_PROXY", "http://me:p%40ss@proxy.example.net:3128")
    monkeypatch.setenv("NO_PROXY", ".internal.example.net")

    url, headers = network.proxy_settings(None).for_aiohttp(
        "https://graph.microsoft.com"
    )
    bypassed = network.proxy_settings(None).for_aiohttp(
        "https://api.internal.example.net/x"
    )

    assert url == "http://proxy.example.net:3128"
    assert headers == {"Proxy-Authorization": "Basic bWU6cEBzcw=="}
    assert bypassed == (None, None)


# ------------------------------------------------------------- validate


def test_config_reads_proxy_credentials_and_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy password file is a Secret; ``direct`` and ``""`` both mean no proxy."""
    monkeypatch.setenv("LAB_CLIENT_SECRET", "x")
    (tmp_path / "proxy-password").write_text("pw-from-file-44\n", encoding="utf-8")
    (tmp_path / "tenants.yaml").write_text(
        """\
tenants:
  viaproxy:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000001
    secret_env: LAB_CLIENT_SECRET
    proxy: https://proxy.example.net:3128/
    proxy_username: hunter
    proxy_password_file: proxy-password
  direct:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000002
    secret_env: LAB_CLIENT_SECRET
    proxy: DIRECT
  empty:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000003
    secret_env: LAB_CLIENT_SECRET
    proxy: ""
  environment:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000004
    secret_env: LAB_CLIENT_SECRET
""",
        encoding="utf-8",
    )

    settings, problems = load_config(tmp_path)

    assert settings is not None, problems
    tenants = {tenant.name: tenant for tenant in settings.tenants}
    via = tenants["viaproxy"]
    assert via.proxy == "https://proxy.example.net:3128"
    assert via.proxy_username == "hunter"
    assert via.proxy_password is not None
    assert via.proxy_password.reveal() == "pw-from-file-44"
    assert "pw-from-file-44" not in repr(via)
    assert tenants["direct"].proxy == network.DIRECT
    assert tenants["empty"].proxy == network.DIRECT
    assert tenants["environment"].proxy is None
    assert tenants["environment"].ca_mode == "add"
    assert (tenants["environment"].connect_timeout, via.read_timeout) == (10.0, 240.0)
    requests_proxies = network.proxy_settings(
        via.proxy, username=via.proxy_username, password=via.proxy_password
    ).for_requests("https://login.microsoftonline.com/contoso.com")
    assert requests_proxies["https"] == (
        "https://hunter:pw-from-file-44@proxy.example.net:3128"
    )


def test_validate_reports_network_settings_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``validate`` names each bad network setting at its file and line."""
    monkeypatch.setenv("LAB_CLIENT_SECRET", "x")
    monkeypatch.delenv("LAB_PROXY_PASSWORD", raising=False)
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n", encoding="utf-8")
    config = tmp_path / "config"
    config.mkdir()
    (config / "tenants.yaml").write_text(
        f"""\
tenants:
  lab:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000001
    secret_env: LAB_CLIENT_SECRET
    authority: http://login.example.net/contoso.com
    api_base: ftp://api.example.net
    ca_bundle: missing-ca.pem
    ca_mode: merge
    proxy: socks5://proxy.example.net:1080
    proxy_username: hunter
    proxy_password_env: LAB_PROXY_PASSWORD
  other:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000002
    secret_env: LAB_CLIENT_SECRET
    ca_bundle: {not_pem}
    ca_mode: replace
    proxy: http://me:pw-in-url-43@proxy.example.net:3128
  fine:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000003
    secret_env: LAB_CLIENT_SECRET
    proxy: http://proxy.example.net:3128
  bare:
    tenant_id: contoso.com
    client_id: 00000000-0000-0000-0000-000000000004
    secret_env: LAB_CLIENT_SECRET
    ca_mode: replace
""",
        encoding="utf-8",
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "recent-processes.yaml").write_text(HUNT, encoding="utf-8")

    problems = [str(problem) for problem in validate_paths([jobs], config)]

    source = str(config / "tenants.yaml")
    expected = [
        f"{source}:6: tenants.lab.authority: "
        "'http://login.example.net/contoso.com' is not an https:// URL",
        f"{source}:7: tenants.lab.api_base: 'ftp://api.example.net' is not an "
        "https:// URL",
        f"{source}:8: tenants.lab.ca_bundle: no such file: {config / 'missing-ca.pem'}",
        f"{source}:9: tenants.lab.ca_mode: 'merge' is not one of add, replace",
        f"{source}:10: tenants.lab.proxy: 'socks5://proxy.example.net:1080' is not "
        "an http(s):// URL",
        f"{source}:12: warning: tenants.lab.proxy_password_env: environment "
        "variable LAB_PROXY_PASSWORD is not set (run and query need it)",
        f"{source}:19: tenants.other.proxy: credentials in the proxy URL are not "
        "accepted; use proxy_username with proxy_password_env or "
        "proxy_password_file",
        f"{source}:29: tenants.bare.ca_mode: replace needs a ca_bundle to trust "
        "instead",
    ]
    for line in expected:
        assert line in problems
    not_pem_problem = [p for p in problems if p.startswith(f"{source}:17: ")]
    assert len(not_pem_problem) == 1
    assert "holds no usable PEM CA certificate" in not_pem_problem[0]
    assert "pw-in-url-43" not in "\n".join(problems)
    assert not [p for p in problems if "tenants.fine" in p]


def test_validate_reports_urls_the_clients_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authority without tenant, api_base with a query, bad proxy: each at its line."""
    monkeypatch.setenv("LAB_CLIENT_SECRET", "x")
    config = tmp_path / "config"
    config.mkdir()
    ids = (
        "    tenant_id: contoso.com\n"
        "    client_id: 00000000-0000-0000-0000-000000000001\n"
        "    secret_env: LAB_CLIENT_SECRET\n"
    )
    (config / "tenants.yaml").write_text(
        "tenants:\n"
        "  one:\n"
        f"{ids}"
        "    authority: https://login.example.net/\n"
        "    api_base: https://api.example.net/defender?y=1\n"
        "    proxy: http://proxy.example.net:99999\n"
        "  two:\n"
        f"{ids}"
        "    authority: https://login.example.net\n"
        "    api_base: https://api.example.net#top\n"
        "    proxy: http://:3128\n"
        "  three:\n"
        f"{ids}"
        "    proxy: http://hunter:pw-in-url-45@proxy.example.net:99999\n",
        encoding="utf-8",
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "recent-processes.yaml").write_text(HUNT, encoding="utf-8")

    problems = [str(problem) for problem in validate_paths([jobs], config)]

    source = str(config / "tenants.yaml")
    no_tenant = (
        "names no tenant; write https://host/<tenant>, like "
        "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    )
    query_string = (
        "has a query string or fragment; the API path is appended to api_base, "
        "so give only https://host and an optional path prefix"
    )
    assert problems == [
        f"{source}:6: tenants.one.authority: 'https://login.example.net/' {no_tenant}",
        f"{source}:7: tenants.one.api_base: 'https://api.example.net/defender?y=1' "
        f"{query_string}",
        f"{source}:8: tenants.one.proxy: 'http://proxy.example.net:99999' has an "
        "invalid port; give one from 1 to 65535",
        f"{source}:13: tenants.two.authority: 'https://login.example.net' {no_tenant}",
        f"{source}:14: tenants.two.api_base: 'https://api.example.net#top' "
        f"{query_string}",
        f"{source}:15: tenants.two.proxy: 'http://:3128' has no host; write "
        "http(s)://host:port",
        f"{source}:20: tenants.three.proxy: credentials in the proxy URL are not "
        "accepted; use proxy_username with proxy_password_env or "
        "proxy_password_file",
    ]


async def test_short_read_timeout_is_a_warning_in_validate_and_at_start(
    sandbox: Sandbox,
    secret_env: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A read_timeout under the service's 3 minutes is a warning, never a refusal."""
    from runner.cli import EXIT_OK, main

    tenants = _tenant_yaml(
        sandbox, "lab", ca_bundle=sandbox.ca_path, extra="read_timeout: 1m"
    )
    config, jobs = _write(tmp_path, tenants)

    status = main(["validate", str(jobs), "--config", str(config)])
    settings, problems = load_config(config)
    assert settings is not None, problems
    with capture_logs() as events:
        async with Runtime(settings, []):
            pass

    err = capsys.readouterr().err
    assert status == EXIT_OK, err
    assert (
        f"{config / 'hunt-runner.yaml'}:12: warning: tenants.lab.read_timeout: 1m is "
        "below the service's 3-minute limit on one query"
    ) in err
    assert "no problems, 1 warning(s)" in err
    warnings = [
        event
        for event in events
        if event["event"] == "tenant.read_timeout_below_service_limit"
    ]
    assert warnings == [
        {
            "event": "tenant.read_timeout_below_service_limit",
            "log_level": "warning",
            "tenant": "lab",
            "read_timeout_s": 60.0,
            "service_limit_s": 180.0,
            "note": "a query the service is still running is cut off here and retried",
        }
    ]


async def test_webhook_sink_goes_through_its_own_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook sink's proxy setting, with credentials, carries its HTTPS posts."""
    from datetime import UTC, datetime

    from aiohttp import web

    from runner.records import Record
    from runner.sinks.base import LocalSinkSpec, build_sink

    certificates = make_server_certificates(tmp_path / "hook")
    received: list[object] = []

    async def hook(request: web.Request) -> web.Response:
        received.extend(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=certificates.server_context()
    )
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("HOOK_PROXY_PASSWORD", "s3cret")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # dead: must be overridden
    moment = datetime(2026, 12, 3, tzinfo=UTC)
    record = Record(
        event_id="e1",
        hunt_id="h",
        hunt_name="H",
        severity="high",
        tenant="t",
        window_start=moment,
        window_end=moment,
        run_id="r",
        row={"DeviceId": "d"},
    )
    try:
        async with ConnectProxy(credentials=("hunt", "s3cret")) as proxy:
            spec = LocalSinkSpec(
                "hook",
                "webhook",
                {
                    "url": f"https://localhost:{port}/hook",
                    "ca_bundle": str(certificates.ca_path),
                    "proxy": proxy.url,
                    "proxy_username": "hunt",
                    "proxy_password": {"env": "HOOK_PROXY_PASSWORD"},
                },
            )
            sink = build_sink(spec)
            try:
                await sink.send([record])
            finally:
                await sink.aclose()
    finally:
        await runner.cleanup()

    assert [item["event_id"] for item in received] == ["e1"]  # type: ignore[index]
    assert proxy.connects[f"localhost:{port}"] == 1
