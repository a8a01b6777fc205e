"""The sandbox: an emulated Defender identity endpoint and hunting APIs.

It serves on loopback HTTPS, runs real KQL (duckdb-kql) over generated
telemetry, and enforces the documented quotas with the documented errors.
"""

from __future__ import annotations

from .server import DemoClient, Sandbox, serve
from .settings import (
    DEMO_CLIENT_ID,
    DEMO_TENANT_ID,
    CallLimit,
    ClientSettings,
    CpuLimit,
    FaultSettings,
    QuotaSettings,
    SandboxClock,
    SandboxSettings,
    SettingsError,
)

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_TENANT_ID",
    "CallLimit",
    "ClientSettings",
    "CpuLimit",
    "DemoClient",
    "FaultSettings",
    "QuotaSettings",
    "Sandbox",
    "SandboxClock",
    "SandboxSettings",
    "SettingsError",
    "serve",
]
