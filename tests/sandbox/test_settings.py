"""Sandbox settings from a YAML-like mapping."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from runner.sandbox import (
    CallLimit,
    ClientSettings,
    CpuLimit,
    QuotaSettings,
    SandboxClock,
    SandboxSettings,
    SettingsError,
)


def test_defaults_are_the_reference_values() -> None:
    """An empty mapping gives the documented defaults."""
    settings = SandboxSettings.from_mapping({})

    assert settings == SandboxSettings()
    assert settings.quotas.calls == (CallLimit(45, 60.0), CallLimit(1500, 3600.0))
    assert settings.quotas.cpu == (CpuLimit(600.0, 3600.0), CpuLimit(10800.0, 86400.0))
    assert settings.quotas.row_cap == 100_000
    assert settings.token_lifetime_seconds == 3600
    assert settings.data_window_days == 30.0


def test_nested_sections_are_converted() -> None:
    """Quotas, faults, clients and the clock start become typed objects."""
    settings = SandboxSettings.from_mapping(
        {
            "seed": 3,
            "days": 1,
            "quotas": {"calls": [{"calls": 5, "window_seconds": 1}], "row_cap": 10},
            "faults": {"sequence": ["ok", "500"], "endpoints": ["graph"]},
            "clients": [{"client_id": "app", "tenant_id": "t", "secret": "s"}],
            "clock_start": "2026-01-01T00:00:00",
        }
    )

    assert settings.quotas == QuotaSettings(calls=(CallLimit(5, 1.0),), row_cap=10)
    assert settings.faults.sequence == ("ok", "500")
    assert settings.clients == (
        ClientSettings(client_id="app", tenant_id="t", secret="s"),
    )
    assert settings.clock_start == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({"sede": 1}, "sandbox: unknown key(s) sede"),
        ({"quotas": {"rows": 1}}, "sandbox.quotas: unknown key(s) rows"),
        ({"live_arrival": "yes"}, "sandbox.live_arrival: expected true or false"),
        ({"days": "many"}, "sandbox.days: expected float"),
        ({"faults": {"sequence": ["boom"]}}, "unknown fault 'boom'"),
        ({"clients": [{"tenant_id": "t"}]}, "sandbox.clients[0]"),
    ],
)
def test_bad_settings_name_the_key(mapping: dict, fragment: str) -> None:
    """Unknown keys and wrong types are errors naming where they are."""
    with pytest.raises(SettingsError, match=re.escape(fragment)):
        SandboxSettings.from_mapping(mapping)


def test_clock_moves_and_sets() -> None:
    """The sandbox clock starts where told and moves by whole offsets."""
    clock = SandboxClock(datetime(2026, 1, 1, tzinfo=UTC))
    before = clock.now()

    clock.advance(3600)

    assert before.year == 2026 and before.month == 1
    assert 3600 <= (clock.now() - before).total_seconds() < 3601
