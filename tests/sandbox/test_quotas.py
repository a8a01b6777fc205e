"""Quota accounting against a fake clock: no sleeping, no HTTP."""

from __future__ import annotations

from runner.sandbox import CallLimit, CpuLimit, QuotaSettings
from runner.sandbox.quotas import Quotas, dotnet_timespan


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_default_limits_refuse_the_46th_call_in_a_minute() -> None:
    """With the reference defaults the 46th call names '45 per 00:01:00'."""
    clock = FakeClock()
    quotas = Quotas(QuotaSettings(), clock)  # type: ignore[arg-type]

    admitted = [quotas.admit("tenant") for _ in range(45)]
    refusal = quotas.admit("tenant")

    assert admitted == [None] * 45
    assert refusal is not None
    assert refusal.message == (
        "API calls quota exceeded! maximum allowed 45 per 00:01:00"
    )
    assert refusal.retry_after == 60.0


def test_compressed_window_is_named_in_the_message() -> None:
    """A one-second window is printed as 00:00:01 and frees after one second."""
    clock = FakeClock()
    quotas = Quotas(QuotaSettings(calls=(CallLimit(45, 1.0),), cpu=()), clock)  # type: ignore[arg-type]
    for _ in range(45):
        assert quotas.admit("tenant") is None
        clock.now += 0.01

    refusal = quotas.admit("tenant")
    clock.now += 0.56
    after = quotas.admit("tenant")

    assert refusal is not None
    assert refusal.message.endswith("maximum allowed 45 per 00:00:01")
    assert abs(refusal.retry_after - 0.55) < 1e-6
    assert after is None


def test_hourly_limit_names_its_window() -> None:
    """The 1,501st call in an hour, spread over minutes, names 01:00:00."""
    clock = FakeClock()
    quotas = Quotas(QuotaSettings(), clock)  # type: ignore[arg-type]
    for _ in range(1500):
        assert quotas.admit("tenant") is None
        clock.now += 2.0

    refusal = quotas.admit("tenant")

    assert refusal is not None
    assert refusal.message.endswith("maximum allowed 1500 per 01:00:00")


def test_refused_calls_consume_nothing() -> None:
    """Calls refused with 429 do not push the window's end further out."""
    clock = FakeClock()
    quotas = Quotas(QuotaSettings(calls=(CallLimit(2, 10.0),), cpu=()), clock)  # type: ignore[arg-type]
    quotas.admit("tenant")
    quotas.admit("tenant")
    for _ in range(20):
        clock.now += 0.4
        assert quotas.admit("tenant") is not None

    clock.now = 1_000_000.0 + 10.0

    assert quotas.admit("tenant") is None
    assert quotas.calls_made("tenant", 10.0) == 1


def test_tenants_have_separate_quotas() -> None:
    """One tenant's spent quota does not refuse another tenant's calls."""
    clock = FakeClock()
    quotas = Quotas(QuotaSettings(calls=(CallLimit(1, 60.0),), cpu=()), clock)  # type: ignore[arg-type]
    quotas.admit("a")

    assert quotas.admit("a") is not None
    assert quotas.admit("b") is None


def test_spent_cpu_refuses_until_the_next_cycle_with_room() -> None:
    """Ten CPU minutes in an hour block the tenant until a 15-minute boundary."""
    clock = FakeClock(now=900.0 * 1000 + 100.0)
    quotas = Quotas(QuotaSettings(), clock)  # type: ignore[arg-type]
    assert quotas.admit("tenant") is None
    quotas.charge("tenant", 600.0)

    refusal = quotas.admit("tenant")

    assert refusal is not None
    assert refusal.kind == "cpu"
    # Charged 100 s past a boundary, the charge leaves the hour window 3,600 s
    # later; the first 15-minute boundary after that is 4,400 s away.
    assert refusal.retry_after == 4400.0
    assert refusal.message == (
        "You have exceeded processing resources allocated to this tenant. "
        "You can run queries again in 01:13:20."
    )
    clock.now += refusal.retry_after
    assert quotas.admit("tenant") is None


def test_cpu_below_budget_is_admitted() -> None:
    """CPU use below every budget admits calls."""
    clock = FakeClock()
    quotas = Quotas(
        QuotaSettings(cpu=(CpuLimit(10.0, 60.0),), calls=()),
        clock,  # type: ignore[arg-type]
    )
    quotas.charge("tenant", 9.5)

    assert quotas.admit("tenant") is None
    assert quotas.cpu_used("tenant", 60.0) == 9.5


def test_dotnet_timespan() -> None:
    """Seconds print as .NET TimeSpans, with seven fractional digits when needed."""
    assert dotnet_timespan(60) == "00:01:00"
    assert dotnet_timespan(3600) == "01:00:00"
    assert dotnet_timespan(0.125) == "00:00:00.1250000"
    assert dotnet_timespan(86400 + 1) == "1.00:00:01"
    assert dotnet_timespan(19.0625) == "00:00:19.0625000"
