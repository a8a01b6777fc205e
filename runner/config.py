"""The daemon's configuration: tenants, sinks, limits, hunt defaults, state.

``load_config(config_dir)`` reads every ``*.yaml``/``*.yml`` file directly in
*config_dir* (or the one file it names), merges them by top-level section (a
section may appear in only one file), and returns frozen ``Settings`` or the
list of every problem found, each with file, line and key.

Paths, and what they are relative to:

* ``secret_file``, ``certificate_file``, ``ca_bundle`` and
  ``proxy_password_file`` belong to the configuration, so a relative one is
  resolved against the folder of the file that names it;
* ``state.path`` and the paths in sink options (``path: out``) are output
  locations, so a relative one stays relative to the working directory the
  daemon runs in.

Secrets are read here, once: ``secret_env``/``certificate_env``/
``proxy_password_env`` name an environment variable,
``secret_file``/``certificate_file``/``proxy_password_file`` a file. A missing
variable or file is a problem naming the variable or file, never a value.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from runner import secrets
from runner.clouds import BACKENDS, CLOUDS
from runner.errors import Problem
from runner.hunts import SEVERITIES, HuntDefaults, read_schedule
from runner.network import CA_MODES, DIRECT, proxy_problem
from runner.secrets import Secret
from runner.yamlio import Document, Fields, YamlPath, is_yaml_file, read_yaml

__all__ = [
    "SERVICE_REQUEST_SECONDS",
    "Credential",
    "Limits",
    "Rate",
    "Settings",
    "SinkSpec",
    "Tenant",
    "load_config",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")

# How long Graph and the XDR API let one query run before they answer with an
# error themselves (the MDE page says 200 s). A shorter read_timeout is allowed,
# with a warning: the client gives up on a query the service is still running.
SERVICE_REQUEST_SECONDS = 180.0


@dataclass(frozen=True)
class Credential:
    """How a tenant's application proves itself; values already resolved.

    ``kind`` is ``secret``, ``certificate``, or ``sandbox`` for a sandbox
    tenant that takes the embedded sandbox's demo credentials.
    """

    kind: str
    secret: Secret | None = None
    certificate_pem: bytes | None = None
    private_key_pem: Secret | None = None
    thumbprint: str | None = None


@dataclass(frozen=True)
class Rate:
    """At most ``count`` (calls, or seconds of CPU) in any ``per_seconds``."""

    count: int
    per_seconds: float


@dataclass(frozen=True)
class Limits:
    """A tenant's API quotas and how hard the client pushes against them."""

    calls: tuple[Rate, ...] = (Rate(45, 60.0), Rate(1500, 3600.0))
    cpu: tuple[Rate, ...] = (Rate(600, 3600.0), Rate(10800, 86400.0))
    max_concurrent: int = 3
    cpu_block_boundary: float = 900.0
    max_retries: int = 4
    time_scale: float = 1.0
    # The service's rows per result: a result this long is fetched again in
    # halves of its window.
    row_cap: int = 100_000
    # Tuning the limiter reads; not settable from YAML.
    skew_margin: float = 0.005
    aging_per_second: float = 1 / 60
    bypass_limit: float | None = None

    def scaled(self) -> Limits:
        """These limits with every window divided by ``time_scale`` (then 1.0).

        Aging speeds up by the same factor, so a compressed run ranks its
        waiters as the real one would.
        """
        if self.time_scale == 1.0:
            return self
        scale = self.time_scale

        return replace(
            self,
            calls=tuple(Rate(r.count, r.per_seconds / scale) for r in self.calls),
            cpu=tuple(Rate(r.count, r.per_seconds / scale) for r in self.cpu),
            cpu_block_boundary=self.cpu_block_boundary / scale,
            aging_per_second=self.aging_per_second * scale,
            bypass_limit=(
                None if self.bypass_limit is None else self.bypass_limit / scale
            ),
            time_scale=1.0,
        )


@dataclass(frozen=True)
class Tenant:
    """One Defender tenant the daemon queries, with everything needed to reach it."""

    name: str
    tenant_id: str
    cloud: str
    backend: str
    client_id: str | None
    credential: Credential
    authority: str | None = None
    api_base: str | None = None
    ca_bundle: str | None = None
    # ``add``: the system store and ca_bundle; ``replace``: ca_bundle only.
    ca_mode: str = "add"
    # A proxy URL; ``direct`` for none; ``None`` to follow HTTPS_PROXY/NO_PROXY.
    proxy: str | None = None
    proxy_username: str | None = None
    proxy_password: Secret | None = None
    verify_tls: bool = True
    connect_timeout: float = 10.0
    # Above the service's own limit (SERVICE_REQUEST_SECONDS), so the
    # service's answer arrives.
    read_timeout: float = 240.0
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class SinkSpec:
    """A configured sink: the shared options here, the sink's own in ``options``."""

    name: str
    type: str
    options: Mapping[str, Any]
    min_severity: str | None
    hunts: tuple[str, ...]
    tags: tuple[str, ...]
    source: str
    line: int


@dataclass(frozen=True)
class Settings:
    """The whole configuration, checked; nothing downstream re-validates it."""

    tenants: tuple[Tenant, ...]
    sinks: tuple[SinkSpec, ...]
    default_sinks: tuple[str, ...]
    hunt_defaults: HuntDefaults
    state_path: Path
    log_level: str
    log_format: str
    sandbox: Mapping[str, Any]
    data_window: timedelta
    source_dir: Path
    # Pending deliveries the outbox holds before hunts stop fetching.
    outbox_capacity: int = 1_000_000
    # Settings that work but are probably not meant: reported by validate,
    # never a reason to refuse the configuration.
    warnings: tuple[Problem, ...] = ()


_SECTIONS = (
    "tenants",
    "sinks",
    "defaults",
    "limits",
    "state",
    "logging",
    "sandbox",
    "data_window",
)
_CREDENTIAL_KEYS = ("secret_env", "secret_file", "certificate_file", "certificate_env")
_PROXY_PASSWORD_KEYS = ("proxy_password_env", "proxy_password_file")
_TENANT_KEYS = frozenset(
    {
        "tenant_id",
        "cloud",
        "backend",
        "client_id",
        *_CREDENTIAL_KEYS,
        "authority",
        "api_base",
        "ca_bundle",
        "ca_mode",
        "proxy",
        "proxy_username",
        *_PROXY_PASSWORD_KEYS,
        "verify_tls",
        "connect_timeout",
        "read_timeout",
        "limits",
    }
)
_LIMIT_KEYS = frozenset(
    {
        "calls",
        "cpu",
        "max_concurrent",
        "cpu_block_boundary",
        "max_retries",
        "time_scale",
        "row_cap",
    }
)
_SINK_SHARED_KEYS = frozenset({"type", "min_severity", "hunts", "tags"})
_DEFAULTS_KEYS = frozenset(
    {"schedule", "lookback", "delay", "severity", "sinks", "priority", "timeout"}
)
_GUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_DOMAIN = re.compile(r"^(?=.{4,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The value is not repeated: what was pasted here is often the secret itself.
_NOT_AN_ENV_NAME = (
    "is not an environment variable name; give the name of the variable that "
    "holds the secret, not the secret (the value is not shown)"
)
_RATE_TEXT = re.compile(r"^\s*(\S+)\s*(?:/|per)\s*(\S+)\s*$")
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


@dataclass
class _Section:
    document: Document
    value: Any


def load_config(
    config_dir: Path | str, *, partial: bool = False, secrets: bool = True
) -> tuple[Settings | None, list[Problem]]:
    """The settings in *config_dir*, or ``None`` and every problem found.

    With *partial*, settings built from the parts without problems are returned
    alongside the problems, for ``validate`` to check further. Without
    *secrets* (commands that call no API: validate, list, status, health), a
    secret, certificate or proxy password that cannot be read is a warning,
    and the tenant's credential is left empty.
    """
    sections, problems = _read_sections(config_dir)
    if sections is None:
        return None, problems

    loader = _Loader(problems, secrets=secrets)
    folder = Path(config_dir)
    settings = loader.settings(sections, folder if folder.is_dir() else folder.parent)
    if problems:
        order = {
            path: index
            for index, path in enumerate(dict.fromkeys(p.path for p in problems))
        }
        problems.sort(key=lambda problem: (order[problem.path], problem.line))
        return (settings if partial else None), problems

    return settings, problems


def load_sandbox_section(
    config_dir: Path | str,
) -> tuple[Mapping[str, Any] | None, list[Problem]]:
    """The ``sandbox:`` settings in *config_dir*, for ``hunt-runner sandbox``.

    Only that section is read and checked; a folder without tenants or sinks
    is fine.
    """
    sections, problems = _read_sections(config_dir)
    if sections is None or problems:
        return None, problems
    sandbox = _Loader(problems).sandbox(sections)

    return (None if problems else sandbox), problems


def _config_files(config_dir: Path | str) -> tuple[list[Path], list[Problem]]:
    path = Path(config_dir)
    if path.is_file():
        return [path], []
    if not path.is_dir():
        return [], [Problem(str(config_dir), 0, "no such configuration folder")]
    try:
        files = sorted(
            (
                entry
                for entry in path.iterdir()
                if entry.is_file()
                and is_yaml_file(entry)
                and not entry.name.startswith(".")
            ),
            key=lambda entry: entry.name,
        )
    except OSError as error:
        reason = error.strerror or str(error)
        return [], [Problem(str(config_dir), 0, f"cannot read folder: {reason}")]
    if not files:
        return [], [Problem(str(config_dir), 0, "no *.yaml files in this folder")]

    return files, []


def _read_sections(
    config_dir: Path | str,
) -> tuple[dict[str, _Section] | None, list[Problem]]:
    files, problems = _config_files(config_dir)
    if not files:
        return None, problems

    sections: dict[str, _Section] = {}
    for path in files:
        document, file_problems = read_yaml(path)
        problems.extend(file_problems)
        if document is None or document.data is None:
            continue
        fields = Fields(document, problems)
        data = fields.mapping((), document.data)
        if data is None:
            continue
        for name, value in data.items():
            if name not in _SECTIONS:
                fields.fail(
                    (name,),
                    f"unknown section; known sections are {', '.join(_SECTIONS)}",
                )
                continue
            earlier = sections.get(name)
            if earlier is not None:
                first = earlier.document
                fields.fail(
                    (name,),
                    f"section also given in {first.source}:{first.line((name,))}; "
                    "give each section in one file",
                )
                continue
            sections[name] = _Section(document, value)

    return sections, problems


class _Loader:
    """Builds ``Settings`` from the merged sections, collecting problems."""

    def __init__(self, problems: list[Problem], *, secrets: bool = True) -> None:
        self.problems = problems
        self.warnings: list[Problem] = []
        self.secrets = secrets

    def private(self, fields: Fields, at: YamlPath, path: Path) -> None:
        """Warn when the secret file at *path* can be read by other users."""
        try:
            mode = path.stat().st_mode
        except OSError:
            return
        if stat.S_IMODE(mode) & 0o077:
            problem = fields.document.problem(
                at,
                f"{path} can be read by other users (mode "
                f"{stat.S_IMODE(mode):o}); chmod 600 it",
            )
            self.warnings.append(replace(problem, warning=True))

    def unavailable(self, fields: Fields, at: YamlPath, message: str) -> None:
        """A secret that cannot be read: a problem, or a warning without secrets."""
        if self.secrets:
            fields.fail(at, message)
            return
        problem = fields.document.problem(at, f"{message} (run and query need it)")
        self.warnings.append(replace(problem, warning=True))

    def sandbox(self, sections: Mapping[str, _Section]) -> Mapping[str, Any]:
        if "sandbox" not in sections or sections["sandbox"].value is None:
            return {}
        section = sections["sandbox"]
        fields = self.fields(section)
        sandbox = fields.mapping(("sandbox",), section.value) or {}
        _check_sandbox(fields, sandbox)

        return sandbox

    def fields(self, section: _Section) -> Fields:
        return Fields(section.document, self.problems)

    def settings(self, sections: dict[str, _Section], source_dir: Path) -> Settings:
        limits = Limits()
        if "limits" in sections:
            section = sections["limits"]
            limits = self.limits(
                self.fields(section), ("limits",), section.value, limits
            )

        tenants: list[Tenant] = []
        if "tenants" not in sections:
            self.problems.append(
                Problem(str(source_dir), 0, "no tenants section; configure one tenant")
            )
        else:
            section = sections["tenants"]
            fields = self.fields(section)
            mapping = fields.mapping(("tenants",), section.value)
            if mapping is not None and not mapping:
                fields.fail(("tenants",), "configure at least one tenant")
            for name, value in (mapping or {}).items():
                tenant = self.tenant(fields, name, value, limits)
                if tenant is not None:
                    tenants.append(tenant)

        sinks: list[SinkSpec] = []
        if "sinks" in sections:
            section = sections["sinks"]
            fields = self.fields(section)
            mapping = fields.mapping(("sinks",), section.value)
            for name, value in (mapping or {}).items():
                spec = self.sink(fields, name, value)
                if spec is not None:
                    sinks.append(spec)

        hunt_defaults = HuntDefaults(sinks=tuple(spec.name for spec in sinks))
        default_sinks = hunt_defaults.sinks
        if "defaults" in sections:
            section = sections["defaults"]
            hunt_defaults = self.hunt_defaults(
                self.fields(section), section.value, hunt_defaults, sinks
            )
            default_sinks = hunt_defaults.sinks

        state_path = Path("state/hunt-runner.db")
        outbox_capacity = 1_000_000
        if "state" in sections:
            section = sections["state"]
            fields = self.fields(section)
            mapping = fields.mapping(("state",), section.value) or {}
            fields.known_keys(("state",), mapping, ("path", "outbox_capacity"))
            if "path" in mapping:
                text = fields.string(("state", "path"), mapping["path"])
                state_path = Path(text) if text else state_path
            if "outbox_capacity" in mapping:
                outbox_capacity = (
                    fields.integer(
                        ("state", "outbox_capacity"), mapping["outbox_capacity"], low=1
                    )
                    or outbox_capacity
                )

        log_level, log_format = "info", "auto"
        if "logging" in sections:
            section = sections["logging"]
            fields = self.fields(section)
            mapping = fields.mapping(("logging",), section.value) or {}
            fields.known_keys(("logging",), mapping, ("level", "format"))
            if "level" in mapping:
                log_level = (
                    fields.string(
                        ("logging", "level"), mapping["level"], choices=LOG_LEVELS
                    )
                    or log_level
                )
            if "format" in mapping:
                log_format = (
                    fields.string(
                        ("logging", "format"), mapping["format"], choices=LOG_FORMATS
                    )
                    or log_format
                )

        sandbox = self.sandbox(sections)

        data_window = timedelta(days=30)
        if "data_window" in sections:
            section = sections["data_window"]
            data_window = (
                self.fields(section).duration(
                    ("data_window",), section.value, positive=True
                )
                or data_window
            )

        return Settings(
            tenants=tuple(tenants),
            sinks=tuple(sinks),
            default_sinks=default_sinks,
            hunt_defaults=hunt_defaults,
            state_path=state_path,
            outbox_capacity=outbox_capacity,
            log_level=log_level,
            log_format=log_format,
            sandbox=sandbox,
            data_window=data_window,
            source_dir=source_dir,
            warnings=tuple(self.warnings),
        )

    # ---------------------------------------------------------------- tenants

    def tenant(
        self, fields: Fields, name: str, value: Any, base_limits: Limits
    ) -> Tenant | None:
        path: YamlPath = ("tenants", name)
        before = len(self.problems)
        data = fields.mapping(path, value)
        if data is None:
            return None
        fields.known_keys(path, data, _TENANT_KEYS)
        folder = Path(fields.document.source).parent

        def text(key: str) -> str | None:
            return fields.string((*path, key), data[key]) if key in data else None

        cloud = "commercial"
        if "cloud" in data:
            cloud = (
                fields.string((*path, "cloud"), data["cloud"], choices=CLOUDS) or cloud
            )
        backend = "graph"
        if "backend" in data:
            backend = (
                fields.string((*path, "backend"), data["backend"], choices=BACKENDS)
                or backend
            )
        sandbox = cloud == "sandbox"

        tenant_id = text("tenant_id")
        if tenant_id is None and "tenant_id" not in data and not sandbox:
            fields.fail(path, "tenant_id is missing (the directory GUID or domain)")
        elif tenant_id is not None and not (
            _GUID.match(tenant_id) or _DOMAIN.match(tenant_id)
        ):
            fields.fail(
                (*path, "tenant_id"),
                f"{tenant_id!r} is neither a GUID nor a domain like contoso.com",
            )
        client_id = text("client_id")
        if client_id is None and "client_id" not in data and not sandbox:
            fields.fail(path, "client_id is missing (the application's GUID)")
        elif client_id is not None and not sandbox and not _GUID.match(client_id):
            fields.fail((*path, "client_id"), f"{client_id!r} is not a GUID")

        credential = self.credential(fields, path, data, folder, sandbox)
        authority = self.authority(fields, path, data)
        api_base = self.api_base(fields, path, data)
        ca_bundle = self.ca_bundle(fields, path, data, folder)
        ca_mode = "add"
        if "ca_mode" in data:
            ca_mode = (
                fields.string((*path, "ca_mode"), data["ca_mode"], choices=CA_MODES)
                or ca_mode
            )
            if ca_mode == "replace" and "ca_bundle" not in data:
                fields.fail(
                    (*path, "ca_mode"), "replace needs a ca_bundle to trust instead"
                )
        proxy = self.proxy(fields, path, data)
        proxy_username, proxy_password = self.proxy_credentials(
            fields, path, data, folder
        )
        verify_tls = True
        if "verify_tls" in data:
            verify_tls = fields.boolean((*path, "verify_tls"), data["verify_tls"])
        connect_timeout = self.seconds(fields, path, data, "connect_timeout", 10.0)
        read_timeout = self.seconds(fields, path, data, "read_timeout", 240.0)
        if read_timeout < SERVICE_REQUEST_SECONDS:
            problem = fields.document.problem(
                (*path, "read_timeout"),
                f"{data['read_timeout']} is below the service's 3-minute limit on "
                "one query, so a slow query is cut off here and retried before the "
                "service answers (allowed; logged at start as "
                "tenant.read_timeout_below_service_limit)",
            )
            self.warnings.append(replace(problem, warning=True))
        limits = base_limits
        if "limits" in data:
            limits = self.limits(fields, (*path, "limits"), data["limits"], base_limits)

        if len(self.problems) > before or credential is None:
            return None

        return Tenant(
            name=name,
            tenant_id=tenant_id or "",
            cloud=cloud,
            backend=backend,
            client_id=client_id,
            credential=credential,
            authority=authority,
            api_base=api_base,
            ca_bundle=ca_bundle,
            ca_mode=ca_mode,
            proxy=proxy,
            proxy_username=proxy_username,
            proxy_password=proxy_password,
            verify_tls=bool(verify_tls),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            limits=limits,
        )

    def credential(
        self,
        fields: Fields,
        path: YamlPath,
        data: dict[str, Any],
        folder: Path,
        sandbox: bool,
    ) -> Credential | None:
        given = [key for key in _CREDENTIAL_KEYS if key in data]
        if len(given) > 1:
            fields.fail(
                (*path, given[1]),
                f"give exactly one of {', '.join(_CREDENTIAL_KEYS)}; found "
                f"{' and '.join(given)}",
            )
            return None
        if not given:
            if sandbox:
                return Credential(kind="sandbox")
            fields.fail(
                path,
                f"needs a credential: one of {', '.join(_CREDENTIAL_KEYS)}",
            )
            return None

        key = given[0]
        at = (*path, key)
        name = fields.string(at, data[key])
        if name is None:
            return None
        if key == "secret_env":
            return self.secret_from_env(fields, at, name)
        if key == "secret_file":
            secret_path = folder / Path(name).expanduser()
            try:
                secret = secrets.from_file(secret_path)
                self.private(fields, at, secret_path)
                return Credential(kind="secret", secret=secret)
            except FileNotFoundError:
                self.unavailable(fields, at, f"no such secret file: {secret_path}")
            except (OSError, UnicodeDecodeError, ValueError) as error:
                self.unavailable(
                    fields, at, f"cannot read secret file {secret_path}: {error}"
                )
            return None if self.secrets else Credential(kind="secret")

        if key == "certificate_env":
            if not _ENV_NAME.match(name):
                fields.fail(at, _NOT_AN_ENV_NAME)
                return None
            value = os.environ.get(name)
            if not value:
                self.unavailable(fields, at, _unset(name))
                return None if self.secrets else Credential(kind="certificate")
            pem, origin = value.encode("utf-8"), f"env:{name}"
        else:
            cert_path = folder / Path(name).expanduser()
            try:
                pem = cert_path.read_bytes()
                self.private(fields, at, cert_path)
            except OSError as error:
                if isinstance(error, FileNotFoundError):
                    message = f"no such certificate file: {cert_path}"
                else:
                    message = f"cannot read {cert_path}: {error.strerror or error}"
                self.unavailable(fields, at, message)
                return None if self.secrets else Credential(kind="certificate")
            origin = f"file:{cert_path}"
        try:
            return _certificate(pem, origin)
        except ValueError as error:
            fields.fail(at, str(error))
            return None

    def secret_from_env(
        self, fields: Fields, at: YamlPath, name: str
    ) -> Credential | None:
        if not _ENV_NAME.match(name):
            fields.fail(at, _NOT_AN_ENV_NAME)
            return None
        try:
            return Credential(kind="secret", secret=secrets.from_env(name))
        except KeyError:
            self.unavailable(fields, at, _unset(name))
            return None if self.secrets else Credential(kind="secret")

    def ca_bundle(
        self, fields: Fields, path: YamlPath, data: dict[str, Any], folder: Path
    ) -> str | None:
        """The CA bundle's absolute path, checked to hold PEM certificates."""
        if "ca_bundle" not in data:
            return None
        at = (*path, "ca_bundle")
        text = fields.string(at, data["ca_bundle"])
        if text is None:
            return None
        ca_path = folder / Path(text).expanduser()
        if not ca_path.is_file():
            fields.fail(at, f"no such file: {ca_path}")
            return None
        try:
            ssl.create_default_context(cafile=str(ca_path))
        except (ssl.SSLError, OSError) as error:
            reason = getattr(error, "reason", None) or error.strerror or error
            fields.fail(at, f"{ca_path} holds no usable PEM CA certificate ({reason})")
            return None

        return str(ca_path)

    def proxy(self, fields: Fields, path: YamlPath, data: dict[str, Any]) -> str | None:
        """The ``proxy`` URL, ``direct``, or ``None`` to follow the environment."""
        if "proxy" not in data:
            return None
        at = (*path, "proxy")
        if data["proxy"] == "":
            return DIRECT
        text = fields.string(at, data["proxy"])
        if text is None:
            return None
        if text.lower() == DIRECT:
            return DIRECT
        problem = proxy_problem(text, "proxy_password_env or proxy_password_file")
        if problem is not None:
            fields.fail(at, problem)
            return None

        return text.rstrip("/")

    def proxy_credentials(
        self, fields: Fields, path: YamlPath, data: dict[str, Any], folder: Path
    ) -> tuple[str | None, Secret | None]:
        username = None
        if "proxy_username" in data:
            username = fields.string((*path, "proxy_username"), data["proxy_username"])
        given = [key for key in _PROXY_PASSWORD_KEYS if key in data]
        if len(given) > 1:
            fields.fail(
                (*path, given[1]),
                "give one of proxy_password_env and proxy_password_file, not both",
            )
            return username, None
        if "proxy_username" in data and not given:
            fields.fail(
                (*path, "proxy_username"),
                "needs proxy_password_env or proxy_password_file",
            )
        if not given:
            return username, None

        key = given[0]
        at = (*path, key)
        if "proxy_username" not in data:
            fields.fail(at, "needs proxy_username")
        if data.get("proxy") is None or data.get("proxy") in ("", DIRECT):
            fields.fail(at, "proxy credentials need a proxy URL in proxy")
        name = fields.string(at, data[key])
        if name is None:
            return username, None
        if key == "proxy_password_env":
            if not _ENV_NAME.match(name):
                fields.fail(at, _NOT_AN_ENV_NAME)
                return username, None
            try:
                return username, secrets.from_env(name)
            except KeyError:
                self.unavailable(fields, at, _unset(name))
                return username, None

        password_path = folder / Path(name).expanduser()
        try:
            password = secrets.from_file(password_path)
            self.private(fields, at, password_path)
            return username, password
        except FileNotFoundError:
            self.unavailable(fields, at, f"no such password file: {password_path}")
        except (OSError, UnicodeDecodeError, ValueError) as error:
            self.unavailable(
                fields, at, f"cannot read password file {password_path}: {error}"
            )

        return username, None

    def authority(
        self, fields: Fields, path: YamlPath, data: dict[str, Any]
    ) -> str | None:
        """The sign-in ``authority``: an https URL whose first segment is the tenant."""
        authority = self.https_url(fields, path, data, "authority")
        if authority is None:
            return None
        # msal takes the tenant from the first path segment and refuses an
        # authority without one, at the first token request.
        segments = urlsplit(authority).path.split("/")
        if len(segments) < 2 or not segments[1]:
            fields.fail(
                (*path, "authority"),
                f"{data['authority']!r} names no tenant; write https://host/<tenant>, "
                "like https://login.microsoftonline.com/contoso.onmicrosoft.com",
            )
            return None

        return authority

    def api_base(
        self, fields: Fields, path: YamlPath, data: dict[str, Any]
    ) -> str | None:
        """The ``api_base`` URL the API path is appended to, so with no query."""
        api_base = self.https_url(fields, path, data, "api_base")
        if api_base is not None and ("?" in api_base or "#" in api_base):
            fields.fail(
                (*path, "api_base"),
                f"{data['api_base']!r} has a query string or fragment; the API path "
                "is appended to api_base, so give only https://host and an optional "
                "path prefix",
            )
            return None

        return api_base

    def https_url(
        self, fields: Fields, path: YamlPath, data: dict[str, Any], key: str
    ) -> str | None:
        if key not in data:
            return None
        text = fields.string((*path, key), data[key])
        if text is None:
            return None
        if "@" in text.partition("://")[2].partition("/")[0]:
            # Checked first, so that no other message repeats the password.
            fields.fail(
                (*path, key),
                "credentials in the URL are not accepted; the service signs in "
                "with the tenant's credential",
            )
            return None
        try:
            parts = urlsplit(text)
        except ValueError:  # an unclosed IPv6 bracket
            fields.fail((*path, key), f"{text!r} has an invalid host")
            return None
        if parts.scheme != "https" or not parts.hostname:
            fields.fail((*path, key), f"{text!r} is not an https:// URL")
            return None

        return text.rstrip("/")

    def seconds(
        self,
        fields: Fields,
        path: YamlPath,
        data: dict[str, Any],
        key: str,
        default: float,
    ) -> float:
        if key not in data:
            return default
        value = fields.duration((*path, key), data[key], positive=True)

        return value.total_seconds() if value is not None else default

    # ----------------------------------------------------------------- limits

    def limits(
        self, fields: Fields, path: YamlPath, value: Any, base: Limits
    ) -> Limits:
        data = fields.mapping(path, value)
        if data is None:
            return base
        fields.known_keys(path, data, _LIMIT_KEYS)
        changes: dict[str, Any] = {}
        if "calls" in data:
            changes["calls"] = self.rates(
                fields, (*path, "calls"), data["calls"], cpu=False
            )
        if "cpu" in data:
            changes["cpu"] = self.rates(fields, (*path, "cpu"), data["cpu"], cpu=True)
        if "max_concurrent" in data:
            changes["max_concurrent"] = fields.integer(
                (*path, "max_concurrent"), data["max_concurrent"], low=1
            )
        if "max_retries" in data:
            changes["max_retries"] = fields.integer(
                (*path, "max_retries"), data["max_retries"], low=0
            )
        if "row_cap" in data:
            changes["row_cap"] = fields.integer(
                (*path, "row_cap"), data["row_cap"], low=1
            )
        if "cpu_block_boundary" in data:
            boundary = fields.duration(
                (*path, "cpu_block_boundary"), data["cpu_block_boundary"], positive=True
            )
            changes["cpu_block_boundary"] = boundary and boundary.total_seconds()
        if "time_scale" in data:
            changes["time_scale"] = fields.number(
                (*path, "time_scale"), data["time_scale"], positive=True
            )

        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def rates(
        self, fields: Fields, path: YamlPath, value: Any, *, cpu: bool
    ) -> tuple[Rate, ...] | None:
        """``["45/1m", "1500/1h"]`` for calls, ``["10m/1h", "3h/1d"]`` for CPU."""
        example = (
            '"10m/1h" or {budget: 10m, per: 1h}'
            if cpu
            else '"45/1m" or {count: 45, per: 1m}'
        )
        if not isinstance(value, list) or not value:
            fields.fail(path, f"expected a list of rates like {example}")
            return None
        rates = []
        for index, item in enumerate(value):
            at = (*path, index)
            amount_key = "budget" if cpu else "count"
            if isinstance(item, str) and (match := _RATE_TEXT.match(item)):
                amount, per = match.group(1), match.group(2)
            elif isinstance(item, dict):
                fields.known_keys(at, item, (amount_key, "per"))
                if amount_key not in item or "per" not in item:
                    fields.fail(at, f"needs {amount_key} and per")
                    return None
                amount, per = item[amount_key], item["per"]
            else:
                fields.fail(at, f"{item!r} is not a rate; write {example}")
                return None
            window = fields.duration(at, per, positive=True)
            if cpu:
                budget = fields.duration(at, amount, positive=True)
                count = int(budget.total_seconds()) if budget else None
            else:
                count = _count(fields, at, amount)
            if window is None or count is None:
                return None
            rates.append(Rate(count, window.total_seconds()))

        return tuple(rates)

    # ------------------------------------------------------------------ sinks

    def sink(self, fields: Fields, name: str, value: Any) -> SinkSpec | None:
        path: YamlPath = ("sinks", name)
        before = len(self.problems)
        data = fields.mapping(path, value)
        if data is None:
            return None
        sink_type = None
        if "type" not in data:
            fields.fail(path, "type is missing (file, stdout, webhook, syslog, ...)")
        else:
            sink_type = fields.string((*path, "type"), data["type"], lower=True)
        min_severity = None
        if data.get("min_severity") is not None:
            min_severity = fields.string(
                (*path, "min_severity"), data["min_severity"], choices=SEVERITIES
            )
        hunts = (
            fields.strings((*path, "hunts"), data["hunts"]) if "hunts" in data else ()
        )
        tags = fields.strings((*path, "tags"), data["tags"]) if "tags" in data else ()
        if len(self.problems) > before or sink_type is None:
            return None

        options = {k: v for k, v in data.items() if k not in _SINK_SHARED_KEYS}
        return SinkSpec(
            name=name,
            type=sink_type,
            options=options,
            min_severity=min_severity,
            hunts=hunts or (),
            tags=tags or (),
            source=fields.document.source,
            line=fields.document.line(path),
        )

    # --------------------------------------------------------------- defaults

    def hunt_defaults(
        self,
        fields: Fields,
        value: Any,
        base: HuntDefaults,
        sinks: list[SinkSpec],
    ) -> HuntDefaults:
        path: YamlPath = ("defaults",)
        data = fields.mapping(path, value)
        if data is None:
            return base
        fields.known_keys(path, data, _DEFAULTS_KEYS)
        changes: dict[str, Any] = {}
        if "schedule" in data:
            changes["schedule"] = read_schedule(
                fields, (*path, "schedule"), data["schedule"], base
            )
        for key in ("lookback", "timeout"):
            if key in data:
                changes[key] = fields.duration((*path, key), data[key], positive=True)
        if "delay" in data:
            changes["delay"] = fields.duration((*path, "delay"), data["delay"])
        if "severity" in data:
            changes["severity"] = fields.string(
                (*path, "severity"), data["severity"], choices=SEVERITIES
            )
        if "priority" in data:
            changes["priority"] = fields.integer(
                (*path, "priority"), data["priority"], low=0, high=10
            )
        if "sinks" in data:
            names = fields.strings((*path, "sinks"), data["sinks"])
            known = {spec.name for spec in sinks}
            for index, sink_name in enumerate(names or ()):
                if sink_name not in known:
                    fields.fail(
                        (*path, "sinks", index),
                        f"no sink named {sink_name!r}; configured sinks are "
                        f"{', '.join(sorted(known)) or 'none'}",
                    )
            changes["sinks"] = names

        return replace(base, **{k: v for k, v in changes.items() if v is not None})


def _unset(name: str) -> str:
    if name in os.environ:
        return f"environment variable {name} is empty"

    return f"environment variable {name} is not set"


def _check_sandbox(fields: Fields, mapping: Mapping[str, Any]) -> None:
    """Report a bad ``sandbox:`` setting at its line, as the daemon would refuse it."""
    from runner.sandbox.settings import SandboxSettings, SettingsError

    try:
        SandboxSettings.from_mapping(dict(mapping))
    except SettingsError as error:
        where, _, message = str(error).partition(": ")
        path: list[str | int] = []
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", where):
            path.append(int(part[1:-1]) if part.startswith("[") else part)
        if path[:1] != ["sandbox"]:
            path.insert(0, "sandbox")
        fields.fail(tuple(path), message)


def _count(fields: Fields, at: YamlPath, amount: Any) -> int | None:
    if isinstance(amount, str) and amount.strip().isdigit():
        amount = int(amount)

    return fields.integer(at, amount, low=1)


def _certificate(pem: bytes, origin: str) -> Credential:
    """The certificate credential in *pem* (a certificate and its private key)."""
    blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(pem)]
    certificates = [block for label, block in blocks if label == b"CERTIFICATE"]
    keys = [block for label, block in blocks if label.endswith(b"PRIVATE KEY")]
    if not certificates or not keys:
        raise ValueError(
            "expected a PEM file with a CERTIFICATE and a PRIVATE KEY block"
        )
    try:
        certificate = x509.load_pem_x509_certificate(certificates[0])
    except ValueError:
        raise ValueError("the CERTIFICATE block cannot be read") from None
    try:
        key = serialization.load_pem_private_key(keys[0], password=None)
    except TypeError:
        raise ValueError(
            "the private key is encrypted; give it unencrypted (protect the file "
            "instead)"
        ) from None
    except ValueError:
        raise ValueError("the PRIVATE KEY block cannot be read") from None

    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(
        der, spki
    ) != certificate.public_key().public_bytes(der, spki):
        raise ValueError("the private key does not belong to the certificate")
    if certificate.not_valid_after_utc < datetime.now(UTC):
        raise ValueError(
            f"the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}"
        )

    return Credential(
        kind="certificate",
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        private_key_pem=Secret(keys[0].decode("ascii") + "\n", origin),
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),
    )
