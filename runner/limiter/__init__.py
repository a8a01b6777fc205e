"""The quota-aware limiter: call windows, CPU budget, 429 pauses, per-tenant queue.

Each tenant has a ``TenantLimiter`` (``tenant.py``) in front of its sliding
log of calls (``calls.py``) and its CPU ledger (``cpu.py``); ``retry_after.py``
reads what a 429 says. ``Limiter`` holds one per tenant, and tenants never
wait for one another. Typical use by the executor::

    limiter = registry.for_tenant(tenant)
    async with limiter.acquire(hunt=..., priority=..., expected_cpu=...) as permit:
        await permit.call()          # before every HTTP attempt, retries too
        ...                          # on a 429: limiter.on_throttled(error)
        permit.charge(cpu_seconds)
"""

from __future__ import annotations

from typing import Any

from runner.clock import Clock
from runner.config import Limits, Rate
from runner.limiter.cpu import update_average
from runner.limiter.retry_after import parse_retry_after, parse_window
from runner.limiter.tenant import Permit, QuotaJournal, QuotaUsage, TenantLimiter

# Seconds added to every call window on top of ``Limits.skew_margin``: the
# one-way delay to the service varies by tens of milliseconds (measured up to
# 35 ms on a loaded two-core host, client and sandbox in one process), and a
# margin that shrinks with a compressed window would not cover it. Real time,
# never scaled; at the real one-minute window it costs 0.08% of the calls.
SKEW_FLOOR = 0.05

__all__ = [
    "Limiter",
    "Limits",
    "Permit",
    "QuotaJournal",
    "QuotaUsage",
    "Rate",
    "SKEW_FLOOR",
    "TenantLimiter",
    "parse_retry_after",
    "parse_window",
    "update_average",
]


class Limiter:
    """One ``TenantLimiter`` per tenant."""

    def __init__(self, clock: Clock, journal: QuotaJournal | None = None) -> None:
        self.clock = clock
        self._journal = journal
        self._tenants: dict[str, TenantLimiter] = {}

    def add(self, tenant: str, limits: Limits | None = None) -> TenantLimiter:
        """Create the limiter of *tenant* from its configured limits.

        Windows are taken after ``Limits.scaled()``: a ``time_scale`` in the
        configuration compresses them here, so pair it with a real clock, not
        with a ``ScaledClock`` that compresses time a second time.
        """
        if tenant in self._tenants:
            raise ValueError(f"tenant {tenant} already has a limiter")
        limits = (limits or Limits()).scaled()
        limiter = TenantLimiter(
            tenant,
            calls=limits.calls,
            cpu=limits.cpu,
            max_concurrent=limits.max_concurrent,
            clock=self.clock,
            cpu_block_boundary=limits.cpu_block_boundary,
            skew_margin=limits.skew_margin,
            skew_floor=SKEW_FLOOR,
            aging_per_second=limits.aging_per_second,
            bypass_limit=limits.bypass_limit,
            journal=self._journal,
        )
        self._tenants[tenant] = limiter

        return limiter

    def share(self, tenant: str, with_tenant: str) -> TenantLimiter:
        """Let *tenant* use the limiter of *with_tenant*: one quota, two names.

        The service counts calls and CPU per Entra tenant, so two configured
        entries for one directory (a Graph and an MDE registration, say) must
        draw from one budget, not from two that together exceed it.
        """
        if tenant in self._tenants:
            raise ValueError(f"tenant {tenant} already has a limiter")
        limiter = self.for_tenant(with_tenant)
        self._tenants[tenant] = limiter

        return limiter

    def for_tenant(self, tenant: str) -> TenantLimiter:
        """Return the limiter of *tenant*; an unknown tenant lists the known ones."""
        try:
            return self._tenants[tenant]
        except KeyError:
            known = ", ".join(sorted(self._tenants)) or "none"
            raise LookupError(
                f"no limiter for tenant {tenant}; known: {known}"
            ) from None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Return every tenant's ``TenantLimiter.snapshot()`` by tenant name.

        Tenants sharing a limiter appear once, under the name it was made for,
        with the others listed as ``shared_by``.
        """
        snapshots: dict[str, dict[str, Any]] = {}
        for name, limiter in self._tenants.items():
            if limiter.tenant == name:
                snapshots[name] = limiter.snapshot()
        for name, limiter in self._tenants.items():
            if limiter.tenant != name:
                snapshots[limiter.tenant].setdefault("shared_by", []).append(name)

        return snapshots

    async def aclose(self) -> None:
        """Stop every tenant's timer."""
        for limiter in {id(x): x for x in self._tenants.values()}.values():
            await limiter.aclose()
