"""Loading the configuration: tenants, credentials, limits, sinks and defaults."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runner.config import Credential, Limits, Rate, Settings, load_config
from runner.errors import Problem
from runner.hunts import HuntDefaults, Schedule
from runner.sandbox.certs import make_server_certificates

SHIPPED = Path(__file__).parents[1] / "config"
TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "66666666-7777-8888-9999-000000000000"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def loaded(folder: Path) -> Settings:
    settings, problems = load_config(folder)
    assert problems == []
    assert settings is not None
    return settings


def problems_in(folder: Path) -> list[str]:
    settings, problems = load_config(folder)
    assert settings is None
    return [f"{Path(p.path).name}:{p.line}: {p.message}" for p in problems]


def real_tenant(credential: str, extra: str = "") -> str:
    return (
        "tenants:\n"
        "  contoso:\n"
        f"    tenant_id: {TENANT_ID}\n"
        f"    client_id: {CLIENT_ID}\n"
        f"    {credential}\n"
        f"{extra}"
    )


def certificate_pem(*, expired: bool = False) -> tuple[bytes, bytes, str]:
    """A self-signed certificate, its key, and its SHA-1 thumbprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hunt-runner test")])
    now = datetime.now(UTC)
    end = now - timedelta(days=1) if expired else now + timedelta(days=30)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    cert = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return cert, key_pem, hashlib.sha1(der).hexdigest().upper()


def test_the_shipped_configuration_loads() -> None:
    """config/hunt-runner.yaml gives a sandbox tenant, a file sink and defaults."""
    settings = loaded(SHIPPED)
    [tenant] = settings.tenants
    assert (tenant.name, tenant.cloud, tenant.backend) == (
        "sandbox",
        "sandbox",
        "graph",
    )
    assert tenant.credential == Credential(kind="sandbox")
    assert (tenant.tenant_id, tenant.client_id) == ("", None)
    assert (tenant.verify_tls, tenant.connect_timeout, tenant.read_timeout) == (
        True,
        10.0,
        240.0,
    )
    assert tenant.limits == Limits()
    [sink] = settings.sinks
    assert (sink.name, sink.type, dict(sink.options)) == (
        "files",
        "file",
        {"path": "out", "format": "jsonl", "per": "hunt"},
    )
    assert sink.source == str(SHIPPED / "hunt-runner.yaml")
    assert settings.default_sinks == ("files",)
    assert settings.hunt_defaults == HuntDefaults(
        schedule=Schedule(timedelta(minutes=15), None, timedelta(seconds=30)),
        lookback=timedelta(hours=1),
        delay=timedelta(minutes=5),
        severity="medium",
        sinks=("files",),
        priority=5,
        timeout=None,
    )
    assert settings.state_path == Path("state/hunt-runner.db")
    assert (settings.log_level, settings.log_format) == ("info", "auto")
    assert settings.data_window == timedelta(days=30)
    assert settings.sandbox == {}


def test_a_single_file_may_be_given_instead_of_a_folder() -> None:
    """load_config accepts one file; its folder is the source folder."""
    settings = loaded(SHIPPED / "hunt-runner.yaml")
    assert settings.source_dir == SHIPPED
    assert [tenant.name for tenant in settings.tenants] == ["sandbox"]


def test_the_shipped_configuration_holds_no_secret_values() -> None:
    """The shipped file names environment variables and files, never a value."""
    text = (SHIPPED / "hunt-runner.yaml").read_text(encoding="utf-8")
    assert "secret:" not in text
    assert "PRIVATE KEY" not in text


def test_secret_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secret_env reads the variable into a Secret that prints redacted."""
    monkeypatch.setenv("CONTOSO_SECRET", "s3cr3t-value")
    write(tmp_path, "c.yaml", real_tenant("secret_env: CONTOSO_SECRET"))
    [tenant] = loaded(tmp_path).tenants
    assert tenant.credential.kind == "secret"
    assert tenant.credential.secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(tenant)
    assert (tenant.cloud, tenant.backend, tenant.client_id) == (
        "commercial",
        "graph",
        CLIENT_ID,
    )


def test_missing_secret_variable_names_it_and_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset secret_env is a problem with file:line and the variable's name."""
    monkeypatch.delenv("CONTOSO_SECRET", raising=False)
    monkeypatch.setenv("OTHER_SECRET", "do-not-print")
    path = write(tmp_path, "c.yaml", real_tenant("secret_env: CONTOSO_SECRET"))
    settings, problems = load_config(tmp_path)
    assert settings is None
    assert problems == [
        Problem(
            str(path),
            5,
            "tenants.contoso.secret_env: environment variable CONTOSO_SECRET "
            "is not set",
        )
    ]


def test_a_secret_pasted_where_a_variable_name_goes_is_not_repeated(
    tmp_path: Path,
) -> None:
    """A secret written into secret_env instead of a variable name is not echoed."""
    pasted = "Xy8Q~pasted.secret-value_42"
    write(tmp_path, "c.yaml", real_tenant(f"secret_env: {pasted}"))
    problems = problems_in(tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(
        "c.yaml:5: tenants.contoso.secret_env: is not an environment variable name"
    )
    assert pasted not in problems[0]


def test_secret_file_is_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secret_file resolves against the config folder, not the working directory."""
    folder = tmp_path / "config"
    write(folder / "secrets", "contoso.txt", "from-a-file\n")
    write(folder, "c.yaml", real_tenant("secret_file: secrets/contoso.txt"))
    monkeypatch.chdir(tmp_path)
    [tenant] = loaded(Path("config")).tenants
    assert tenant.credential.secret.reveal() == "from-a-file"
    (folder / "secrets" / "contoso.txt").unlink()
    assert problems_in(Path("config")) == [
        "c.yaml:5: tenants.contoso.secret_file: no such secret file: "
        "config/secrets/contoso.txt"
    ]


def test_secret_file_written_with_a_bom_and_crlf_gives_the_bare_secret(
    tmp_path: Path,
) -> None:
    """A secret file saved by Windows tools (BOM, CRLF) reads as the secret alone."""
    (tmp_path / "contoso.txt").write_bytes(b"\xef\xbb\xbfXy8Q~from.windows\r\n")
    write(tmp_path, "c.yaml", real_tenant("secret_file: contoso.txt"))
    [tenant] = loaded(tmp_path).tenants
    assert tenant.credential.secret.reveal() == "Xy8Q~from.windows"


def test_a_secret_file_others_can_read_is_a_warning(tmp_path: Path) -> None:
    """A secret file with mode 0644 loads, with a warning to chmod 600 it."""
    secret = tmp_path / "contoso.txt"
    secret.write_text("from-a-file\n")
    secret.chmod(0o644)
    write(tmp_path, "c.yaml", real_tenant("secret_file: contoso.txt"))

    settings, problems = load_config(tmp_path)

    assert problems == [] and settings is not None
    assert [str(w) for w in settings.warnings] == [
        f"{tmp_path / 'c.yaml'}:5: warning: tenants.contoso.secret_file: {secret} "
        "can be read by other users (mode 644); chmod 600 it"
    ]
    secret.chmod(0o600)
    settings, _ = load_config(tmp_path)
    assert settings is not None and settings.warnings == ()


def test_certificate_file_gives_key_certificate_and_thumbprint(tmp_path: Path) -> None:
    """A PEM with certificate and key gives both apart and the SHA-1 thumbprint."""
    cert, key, thumbprint = certificate_pem()
    (tmp_path / "app.pem").write_bytes(cert + key)
    write(tmp_path, "c.yaml", real_tenant("certificate_file: app.pem"))
    [tenant] = loaded(tmp_path).tenants
    credential = tenant.credential
    assert credential.kind == "certificate"
    assert credential.certificate_pem == cert
    assert credential.private_key_pem.reveal() == key.decode("ascii")
    assert credential.thumbprint == thumbprint
    assert "PRIVATE" not in repr(credential)


def test_certificate_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certificate_env reads the PEM text from a variable; key first is fine."""
    cert, key, thumbprint = certificate_pem()
    monkeypatch.setenv("CONTOSO_PEM", (key + cert).decode("ascii"))
    write(tmp_path, "c.yaml", real_tenant("certificate_env: CONTOSO_PEM"))
    [tenant] = loaded(tmp_path).tenants
    assert tenant.credential.thumbprint == thumbprint


def test_unusable_certificates_are_problems(tmp_path: Path) -> None:
    """A key of another certificate, a missing key or an expired one are refused."""
    cert, key, _ = certificate_pem()
    other_cert, _, _ = certificate_pem()
    old_cert, old_key, _ = certificate_pem(expired=True)
    cases = {
        other_cert + key: "the private key does not belong to the certificate",
        cert: "expected a PEM file with a CERTIFICATE and a PRIVATE KEY block",
        old_cert + old_key: "the certificate expired on ",
    }
    for pem, message in cases.items():
        (tmp_path / "app.pem").write_bytes(pem)
        write(tmp_path, "c.yaml", real_tenant("certificate_file: app.pem"))
        [found] = problems_in(tmp_path)
        assert found.startswith(
            f"c.yaml:5: tenants.contoso.certificate_file: {message}"
        )


def test_a_real_tenant_needs_ids_and_exactly_one_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the sandbox, tenant_id, client_id and one credential are required."""
    monkeypatch.setenv("A", "x")
    write(tmp_path, "c.yaml", "tenants:\n  contoso:\n    cloud: gcc-high\n")
    assert problems_in(tmp_path) == [
        "c.yaml:2: tenants.contoso: tenant_id is missing (the directory GUID or "
        "domain)",
        "c.yaml:2: tenants.contoso: client_id is missing (the application's GUID)",
        "c.yaml:2: tenants.contoso: needs a credential: one of secret_env, "
        "secret_file, certificate_file, certificate_env",
    ]
    write(
        tmp_path,
        "c.yaml",
        real_tenant("secret_env: A", "    certificate_env: A\n"),
    )
    assert problems_in(tmp_path) == [
        "c.yaml:6: tenants.contoso.certificate_env: give exactly one of secret_env, "
        "secret_file, certificate_file, certificate_env; found secret_env and "
        "certificate_env"
    ]


def test_tenant_fields_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """URLs must be https, ca_bundle must exist, cloud/backend are from the list."""
    monkeypatch.setenv("A", "x")
    extra = (
        "    authority: http://login.example.com\n"
        "    api_base: https://eu.api.security.microsoft.com/\n"
        "    ca_bundle: missing.pem\n"
        "    cloud: azure-china\n"
        "    backend: sentinel\n"
        "    verify_tls: no\n"
        "    read_timeout: 240\n"
        "    proxy: socks5://proxy:1080\n"
        "    tenant: typo\n"
    )
    write(tmp_path, "c.yaml", real_tenant("secret_env: A", extra))
    assert problems_in(tmp_path) == [
        "c.yaml:6: tenants.contoso.authority: 'http://login.example.com' is not an "
        "https:// URL",
        "c.yaml:8: tenants.contoso.ca_bundle: no such file: "
        f"{tmp_path / 'missing.pem'}",
        "c.yaml:9: tenants.contoso.cloud: 'azure-china' is not one of commercial, "
        "gcc, gcc-high, dod, sandbox",
        "c.yaml:10: tenants.contoso.backend: 'sentinel' is not one of graph, xdr, mde",
        "c.yaml:11: tenants.contoso.verify_tls: 'no' is not a boolean; write true or "
        "false",
        "c.yaml:12: tenants.contoso.read_timeout: 240 has no unit; write 240s, 240m, "
        "240h or 240d",
        "c.yaml:13: tenants.contoso.proxy: 'socks5://proxy:1080' is not an http(s):// "
        "URL",
        "c.yaml:14: tenants.contoso.tenant: unknown key; known keys are api_base, "
        "authority, backend, ca_bundle, ca_mode, certificate_env, certificate_file, "
        "client_id, cloud, connect_timeout, limits, proxy, proxy_password_env, "
        "proxy_password_file, proxy_username, read_timeout, secret_env, secret_file, "
        "tenant_id, verify_tls",
    ]


def test_explicit_overrides_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """authority, api_base, ca_bundle, verify_tls: false and timeouts are taken."""
    monkeypatch.setenv("A", "x")
    ca = make_server_certificates(tmp_path / "ca").ca_path
    (tmp_path / "ca.pem").write_bytes(ca.read_bytes())
    extra = (
        "    authority: https://login.example.com/contoso.com/\n"
        "    api_base: https://eu.api.security.microsoft.com\n"
        "    ca_bundle: ca.pem\n"
        "    backend: xdr\n"
        "    verify_tls: false\n"
        "    connect_timeout: 5s\n"
        "    read_timeout: 4m\n"
        "    proxy: http://proxy.example.com:3128\n"
    )
    write(tmp_path, "c.yaml", real_tenant("secret_env: A", extra))
    [tenant] = loaded(tmp_path).tenants
    assert tenant.authority == "https://login.example.com/contoso.com"
    assert tenant.api_base == "https://eu.api.security.microsoft.com"
    assert tenant.ca_bundle == str(tmp_path / "ca.pem")
    assert (tenant.backend, tenant.verify_tls, tenant.proxy) == (
        "xdr",
        False,
        "http://proxy.example.com:3128",
    )
    assert (tenant.connect_timeout, tenant.read_timeout) == (5.0, 240.0)


def test_limits_merge_top_level_and_tenant_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's limits override the top-level ones key by key."""
    monkeypatch.setenv("A", "x")
    write(
        tmp_path,
        "c.yaml",
        "limits:\n"
        "  cpu: ['5m/1h', {budget: 1h, per: 1d}]\n"
        "  max_concurrent: 2\n"
        "  time_scale: 60\n"
        + real_tenant(
            "secret_env: A",
            "    limits:\n"
            "      calls: ['10/1m', {count: 100, per: 1h}]\n"
            "      max_retries: 0\n",
        )
        + "  sandbox:\n    cloud: sandbox\n",
    )
    contoso, sandbox = loaded(tmp_path).tenants
    assert contoso.limits == Limits(
        calls=(Rate(10, 60.0), Rate(100, 3600.0)),
        cpu=(Rate(300, 3600.0), Rate(3600, 86400.0)),
        max_concurrent=2,
        max_retries=0,
        time_scale=60.0,
    )
    assert sandbox.limits.calls == Limits().calls
    assert sandbox.limits.cpu == contoso.limits.cpu
    scaled = contoso.limits.scaled()
    assert scaled.calls == (Rate(10, 1.0), Rate(100, 60.0))
    assert (scaled.cpu_block_boundary, scaled.time_scale) == (15.0, 1.0)


def test_bad_limits_are_problems(tmp_path: Path) -> None:
    """Rates without units, zero concurrency and unknown limit keys are refused."""
    write(
        tmp_path,
        "c.yaml",
        "tenants: {sandbox: {cloud: sandbox}}\n"
        "limits:\n"
        "  calls: ['45/60']\n"
        "  max_concurrent: 0\n"
        "  burst: 3\n",
    )
    assert problems_in(tmp_path) == [
        "c.yaml:3: limits.calls[0]: '60' is not a duration; write e.g. 30s, 15m, "
        "1h30m, 2d or PT15M",
        "c.yaml:4: limits.max_concurrent: 0 is out of range >= 1",
        "c.yaml:5: limits.burst: unknown key; known keys are calls, cpu, "
        "cpu_block_boundary, max_concurrent, max_retries, row_cap, time_scale",
    ]


def test_sections_merge_across_files_but_not_twice(tmp_path: Path) -> None:
    """Each file may hold some sections; the same section in two files is refused."""
    write(tmp_path, "10-tenants.yaml", "tenants:\n  sandbox: {cloud: sandbox}\n")
    write(tmp_path, "20-sinks.yml", "sinks:\n  out: {type: stdout}\n")
    write(tmp_path, "README.md", "not read\n")
    settings = loaded(tmp_path)
    assert [t.name for t in settings.tenants] == ["sandbox"]
    assert settings.default_sinks == ("out",)
    write(tmp_path, "30-more.YAML", "\n\nsinks:\n  more: {type: stdout}\n")
    assert problems_in(tmp_path) == [
        f"30-more.YAML:3: sinks: section also given in {tmp_path / '20-sinks.yml'}:1;"
        " give each section in one file"
    ]


def test_unknown_sections_and_missing_tenants(tmp_path: Path) -> None:
    """An unknown section lists the known ones; no tenants at all is a problem."""
    write(tmp_path, "c.yaml", "tenant:\n  sandbox: {cloud: sandbox}\n")
    assert problems_in(tmp_path) == [
        "c.yaml:1: tenant: unknown section; known sections are tenants, sinks, "
        "defaults, limits, state, logging, sandbox, data_window",
        f"{tmp_path.name}:0: no tenants section; configure one tenant",
    ]


def test_sinks_split_shared_options_from_their_own(tmp_path: Path) -> None:
    """type, min_severity, hunts and tags are shared; other keys go to options."""
    write(
        tmp_path,
        "c.yaml",
        "tenants: {sandbox: {cloud: sandbox}}\n"
        "sinks:\n"
        "  alerts:\n"
        "    type: Webhook\n"
        "    url: https://hooks.example.com/x\n"
        "    min_severity: High\n"
        "    hunts: [a, b]\n"
        "    tags: [t]\n"
        "  files: {type: file, path: out}\n"
        "defaults:\n"
        "  sinks: [files]\n",
    )
    settings = loaded(tmp_path)
    alerts, files = settings.sinks
    assert (alerts.type, alerts.min_severity, alerts.hunts, alerts.tags) == (
        "webhook",
        "high",
        ("a", "b"),
        ("t",),
    )
    assert dict(alerts.options) == {"url": "https://hooks.example.com/x"}
    assert (alerts.line, files.line) == (3, 9)
    assert settings.default_sinks == ("files",)
    assert settings.hunt_defaults.sinks == ("files",)


def test_default_sinks_must_exist_and_sinks_need_a_type(tmp_path: Path) -> None:
    """defaults.sinks naming no sink, and a sink without a type, are problems."""
    write(
        tmp_path,
        "c.yaml",
        "tenants: {sandbox: {cloud: sandbox}}\n"
        "sinks:\n"
        "  files: {path: out}\n"
        "defaults:\n"
        "  sinks: [file]\n"
        "  enabled: yes\n",
    )
    assert problems_in(tmp_path) == [
        "c.yaml:3: sinks.files: type is missing (file, stdout, webhook, syslog, ...)",
        "c.yaml:5: defaults.sinks[0]: no sink named 'file'; configured sinks are none",
        "c.yaml:6: defaults.enabled: unknown key; known keys are delay, lookback, "
        "priority, schedule, severity, sinks, timeout",
    ]


def test_state_logging_window_and_sandbox_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """state.path stays relative to the working directory; other sections parse."""
    folder = tmp_path / "etc"
    write(
        folder,
        "c.yaml",
        "tenants: {sandbox: {cloud: sandbox}}\n"
        "state: {path: var/state.db}\n"
        "logging: {level: DEBUG, format: json}\n"
        "data_window: 7d\n"
        "sandbox: {seed: 3}\n",
    )
    settings = loaded(folder)
    assert settings.state_path == Path("var/state.db")
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    assert settings.data_window == timedelta(days=7)
    assert settings.sandbox == {"seed": 3}
    assert settings.source_dir == folder


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("sandbox:\n  seed: 3\n  dayz: 2\n", "c.yaml:2: sandbox: unknown key(s) dayz"),
        (
            "sandbox:\n  quotas:\n    calls:\n      - {calls: 4, window_seconds: x}\n",
            "c.yaml:5: sandbox.quotas.calls[0].window_seconds: expected float",
        ),
        (
            "sandbox:\n  live_arrival: 1\n",
            "c.yaml:3: sandbox.live_arrival: expected true or false",
        ),
        (
            "sandbox:\n  faults:\n    sequence: [ok, teapot]\n",
            "c.yaml:3: sandbox.faults: unknown fault 'teapot'",
        ),
    ],
)
def test_bad_sandbox_settings_are_problems_at_their_line(
    tmp_path: Path, section: str, expected: str
) -> None:
    """A sandbox: typo is caught when loading, not as a crash when the daemon starts."""
    folder = tmp_path / "etc"
    write(folder, "c.yaml", "tenants: {sandbox: {cloud: sandbox}}\n" + section)
    (problem,) = problems_in(folder)
    assert problem.startswith(expected)


def test_a_missing_folder_or_an_empty_one_is_a_problem(tmp_path: Path) -> None:
    """No folder, or a folder without YAML files, gives one problem and no settings."""
    assert load_config(tmp_path / "nope") == (
        None,
        [Problem(str(tmp_path / "nope"), 0, "no such configuration folder")],
    )
    assert load_config(tmp_path) == (
        None,
        [Problem(str(tmp_path), 0, "no *.yaml files in this folder")],
    )


def test_a_configuration_folder_that_cannot_be_listed_is_a_problem() -> None:
    """An unreadable configuration folder is one problem naming it, not a crash."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    # Root reads every folder, so as root the loader runs as nobody.
    command = [sys.executable]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop privileges")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command.append(sys.executable)
    # In /tmp, where the unprivileged user can reach it: the run's own
    # temporary folder sits inside one that only root may enter.
    base = Path(tempfile.mkdtemp(prefix="hunt-runner-perm-", dir="/tmp"))
    closed = base / "config"
    try:
        closed.mkdir()
        base.chmod(0o755)
        closed.chmod(0)
        shutil.copytree(Path(__file__).parents[1] / "runner", base / "runner")
        for entry in (base / "runner").rglob("*"):
            entry.chmod(0o755 if entry.is_dir() else 0o644)
        script = (
            "import sys\n"
            "from runner.config import load_config\n"
            "settings, problems = load_config(sys.argv[1])\n"
            "print(settings, [str(p) for p in problems])\n"
        )
        done = subprocess.run(
            [*command, "-c", script, str(closed)],
            cwd=base,
            env={**os.environ, "PYTHONPATH": str(base)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0 and "ModuleNotFoundError" in done.stderr:
            pytest.skip(f"nobody cannot import the dependencies: {done.stderr[-200:]}")
        assert done.stdout.strip() == (
            f"None ['{closed}:0: cannot read folder: Permission denied']"
        ), done.stderr[-2000:]
    finally:
        closed.chmod(0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize(
    "extra",
    [
        "    authority: http://svc:hunter2pw@login.example.com/contoso\n",
        "    authority: https://svc:hunter2pw@login.example.com\n",
        "    api_base: http://svc:hunter2pw@api.example.com\n",
        "    api_base: https://svc:hunter2pw@api.example.com/x?y=1\n",
    ],
)
def test_credentials_in_authority_or_api_base_are_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    """A password written into authority or api_base is refused without repeating it."""
    monkeypatch.setenv("A", "x")
    write(tmp_path, "c.yaml", real_tenant("secret_env: A", extra))
    key = extra.split(":")[0].strip()

    assert problems_in(tmp_path) == [
        f"c.yaml:6: tenants.contoso.{key}: credentials in the URL are not "
        "accepted; the service signs in with the tenant's credential"
    ]


@pytest.mark.parametrize("key", ["authority", "api_base", "proxy"])
def test_an_unclosed_ipv6_bracket_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """A URL with an unclosed IPv6 bracket is a problem at its line, not a traceback."""
    monkeypatch.setenv("A", "x")
    scheme = "http" if key == "proxy" else "https"
    extra = f'    {key}: "{scheme}://[::1/contoso"\n'
    write(tmp_path, "c.yaml", real_tenant("secret_env: A", extra))

    (problem,) = problems_in(tmp_path)
    assert problem.startswith(f"c.yaml:6: tenants.contoso.{key}: ")
    assert "invalid host" in problem
