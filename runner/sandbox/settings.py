"""Sandbox settings: frozen dataclasses with the reference defaults.

``SandboxSettings.from_mapping`` turns the ``sandbox:`` section of the daemon's
YAML configuration into these objects and rejects unknown keys, so a typo in a
key is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_type_hints

# The demo client that works out of the box. Fixed, documented identifiers so a
# user can copy them into a configuration; the secret is generated at start.
DEMO_TENANT_ID = "5a4d2c1b-0e9f-4a8b-9c7d-6e5f4a3b2c1d"
DEMO_CLIENT_ID = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"

FAULT_KINDS = (
    "ok",
    "unknown_error",
    "gateway_timeout",
    "malformed",
    "truncated",
    "reset",
    "slow",
)
# Scripted sequences may name the status codes instead of the kinds.
FAULT_ALIASES = {"500": "unknown_error", "504": "gateway_timeout"}
ENDPOINTS = ("graph", "xdr", "mde")


class SettingsError(ValueError):
    """A sandbox setting is unknown or has the wrong shape; names the key."""


@dataclass(frozen=True)
class CallLimit:
    """At most ``calls`` API calls per tenant in any ``window_seconds``."""

    calls: int
    window_seconds: float


@dataclass(frozen=True)
class CpuLimit:
    """At most ``cpu_seconds`` of charged query CPU per tenant per window."""

    cpu_seconds: float
    window_seconds: float


@dataclass(frozen=True)
class QuotaSettings:
    """Per-tenant limits; defaults from the Defender reference."""

    calls: tuple[CallLimit, ...] = (CallLimit(45, 60.0), CallLimit(1500, 3600.0))
    cpu: tuple[CpuLimit, ...] = (CpuLimit(600.0, 3600.0), CpuLimit(10800.0, 86400.0))
    # Once the CPU budget is spent the tenant waits for the next cycle boundary.
    cpu_cycle_seconds: float = 900.0
    row_cap: int = 100_000
    result_size_bytes: int = 124 * 1024 * 1024
    request_timeout_seconds: float = 180.0


@dataclass(frozen=True)
class FaultSettings:
    """Injected faults: a probability per kind, or a scripted sequence.

    A non-empty ``sequence`` wins over ``probabilities``; once it is used up
    every call is ``ok``. ``endpoints`` limits the faults to some APIs.
    """

    probabilities: dict[str, float] = field(default_factory=dict)
    sequence: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ENDPOINTS
    slow_seconds: float = 5.0
    seed: int = 1

    def __post_init__(self) -> None:
        for kind in [*self.probabilities, *self.sequence]:
            if FAULT_ALIASES.get(kind, kind) not in FAULT_KINDS:
                raise SettingsError(
                    f"faults: unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}"
                )
        for endpoint in self.endpoints:
            if endpoint not in ENDPOINTS:
                raise SettingsError(
                    f"faults.endpoints: unknown endpoint {endpoint!r}; "
                    f"known: {', '.join(ENDPOINTS)}"
                )
        if sum(self.probabilities.values()) > 1.0:
            raise SettingsError("faults.probabilities: the sum exceeds 1")


@dataclass(frozen=True)
class ClientSettings:
    """A registered application: a secret, a certificate (PEM), or both."""

    client_id: str
    tenant_id: str = DEMO_TENANT_ID
    secret: str | None = None
    certificate_pem: str | None = None
    # Issue tokens without application roles, as for an app lacking consent.
    withhold_roles: bool = False


@dataclass(frozen=True)
class SandboxSettings:
    """Everything the sandbox can be told; every limit has the reference default."""

    seed: int = 1
    days: float = 7.0
    devices: int = 40
    users: int = 60
    events_per_hour: int = 2000
    live_arrival: bool = True
    arrival_interval_seconds: float = 30.0
    token_lifetime_seconds: int = 3600
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    clients: tuple[ClientSettings, ...] = ()
    demo_client_secret: str | None = None
    cost_factor: float = 1.0
    extra_latency_seconds: float = 0.0
    data_window_days: float = 30.0
    # Pretend the sandbox started at this UTC instant; time then runs on.
    clock_start: datetime | None = None

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> SandboxSettings:
        """Settings from a YAML mapping; ``SettingsError`` names any bad key."""
        return _build(cls, mapping, "sandbox")


def _build(kind: type, mapping: Any, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise SettingsError(
            f"{where}: expected a mapping, got {type(mapping).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise SettingsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    hints = get_type_hints(kind)
    values = {
        name: _convert(hints[name], value, f"{where}.{name}")
        for name, value in mapping.items()
    }
    try:
        return kind(**values)
    except TypeError as error:
        raise SettingsError(f"{where}: {error}") from error


def _convert(hint: Any, value: Any, where: str) -> Any:
    nested = {
        QuotaSettings: QuotaSettings,
        FaultSettings: FaultSettings,
        ClientSettings: ClientSettings,
        CallLimit: CallLimit,
        CpuLimit: CpuLimit,
    }
    args = getattr(hint, "__args__", ())
    origin = getattr(hint, "__origin__", None)
    if hint in nested:
        return _build(nested[hint], value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{where}: expected a list")
        return tuple(
            _convert(args[0], item, f"{where}[{index}]")
            for index, item in enumerate(value)
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a mapping")
        return {str(key): float(item) for key, item in value.items()}
    if value is None:
        return None
    if datetime in args or hint is datetime:
        return _to_datetime(value, where)
    if bool in (hint, *args):
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false")
        return value
    for scalar in (int, float, str):
        if scalar in (hint, *args):
            try:
                return scalar(value)
            except (TypeError, ValueError) as error:
                raise SettingsError(f"{where}: expected {scalar.__name__}") from error

    return value


def _to_datetime(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as error:
            raise SettingsError(f"{where}: expected an ISO 8601 instant") from error
    if not isinstance(value, datetime):
        raise SettingsError(f"{where}: expected an ISO 8601 instant")

    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SandboxClock:
    """The sandbox's sense of now: the wall clock plus an offset tests can move.

    Tokens, client assertions, quota windows, the data window and KQL ``now()``
    all read this clock, so a test advances it instead of sleeping.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = timedelta(0)
        if start is not None:
            self.set(start)

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        return datetime.now(UTC) + self._offset

    def time(self) -> float:
        """The current instant as seconds since the epoch."""
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, when negative) by *seconds*."""
        self._offset += timedelta(seconds=seconds)

    def set(self, instant: datetime) -> None:
        """Make the clock read *instant* now and run on from there."""
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        self._offset = instant - datetime.now(UTC)
