"""Per-tenant quotas: API calls and query CPU over sliding windows.

Calls are counted when admitted; a call refused with 429 consumes nothing,
as on the real service. CPU is charged after a query runs; once a CPU window
is spent the tenant is refused until the next cycle boundary (15 minutes by
default) at which the window has room again.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass

from .settings import CallLimit, QuotaSettings, SandboxClock


@dataclass(frozen=True)
class QuotaRefusal:
    """Why a call is refused: the 429 message and the seconds until it may retry."""

    message: str
    retry_after: float
    kind: str


def dotnet_timespan(seconds: float) -> str:
    """*seconds* as a .NET TimeSpan string: ``[d.]hh:mm:ss[.fffffff]``."""
    ticks = round(seconds * 10_000_000)
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    total_seconds, fraction = divmod(ticks, 10_000_000)
    days, rest = divmod(total_seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, whole = divmod(rest, 60)
    text = f"{sign}{days}." if days else sign
    text += f"{hours:02d}:{minutes:02d}:{whole:02d}"
    if fraction:
        text += f".{fraction:07d}"

    return text


class Quotas:
    """Call and CPU accounting for every tenant, against an injectable clock."""

    def __init__(self, settings: QuotaSettings, clock: SandboxClock) -> None:
        self.settings = settings
        self.clock = clock
        self._calls: dict[str, deque[float]] = defaultdict(deque)
        self._cpu: dict[str, deque[tuple[float, float]]] = defaultdict(deque)

    def admit(self, tenant: str) -> QuotaRefusal | None:
        """Count one call for *tenant*, or say why it is refused (and count nothing)."""
        now = self.clock.time()
        calls = self._calls[tenant]
        longest = max(
            (limit.window_seconds for limit in self.settings.calls), default=0
        )
        while calls and calls[0] <= now - longest:
            calls.popleft()
        for limit in self.settings.calls:
            refusal = self._call_refusal(calls, limit, now)
            if refusal is not None:
                return refusal
        refusal = self._cpu_refusal(tenant, now)
        if refusal is not None:
            return refusal
        calls.append(now)

        return None

    def charge(self, tenant: str, cpu_seconds: float) -> None:
        """Charge *cpu_seconds* of query CPU to *tenant* at the current instant."""
        self._cpu[tenant].append((self.clock.time(), cpu_seconds))

    def cpu_used(self, tenant: str, window_seconds: float) -> float:
        """CPU seconds *tenant* was charged within the last *window_seconds*."""
        now = self.clock.time()
        return sum(
            spent for when, spent in self._cpu[tenant] if when > now - window_seconds
        )

    def calls_made(self, tenant: str, window_seconds: float) -> int:
        """Calls admitted for *tenant* within the last *window_seconds*."""
        now = self.clock.time()
        return sum(1 for when in self._calls[tenant] if when > now - window_seconds)

    def reset(self) -> None:
        """Forget every call and charge, for every tenant."""
        self._calls.clear()
        self._cpu.clear()

    def _call_refusal(
        self, calls: deque[float], limit: CallLimit, now: float
    ) -> QuotaRefusal | None:
        start = now - limit.window_seconds
        in_window = [when for when in calls if when > start]
        if len(in_window) < limit.calls:
            return None
        # The call that frees a slot is the one that entered the window first
        # among the last ``calls`` of them.
        freeing = in_window[len(in_window) - limit.calls]

        return QuotaRefusal(
            message=(
                f"API calls quota exceeded! maximum allowed {limit.calls} per "
                f"{dotnet_timespan(limit.window_seconds)}"
            ),
            retry_after=max(freeing + limit.window_seconds - now, 0.001),
            kind="calls",
        )

    def _cpu_refusal(self, tenant: str, now: float) -> QuotaRefusal | None:
        charges = self._cpu[tenant]
        longest = max((limit.window_seconds for limit in self.settings.cpu), default=0)
        while charges and charges[0][0] <= now - longest:
            charges.popleft()
        spent_limits = [
            limit
            for limit in self.settings.cpu
            if self._spent_at(charges, limit.window_seconds, now) >= limit.cpu_seconds
        ]
        if not spent_limits:
            return None

        cycle = self.settings.cpu_cycle_seconds
        boundary = math.floor(now / cycle) * cycle + cycle
        # Step from cycle to cycle until every window has room again; windows
        # longer than a day would step many times, which is fine for a sandbox.
        while any(
            self._spent_at(charges, limit.window_seconds, boundary) >= limit.cpu_seconds
            for limit in self.settings.cpu
        ):
            boundary += cycle
        wait = boundary - now

        return QuotaRefusal(
            message=(
                "You have exceeded processing resources allocated to this tenant. "
                f"You can run queries again in {_clock_duration(wait)}."
            ),
            retry_after=wait,
            kind="cpu",
        )

    @staticmethod
    def _spent_at(
        charges: deque[tuple[float, float]], window_seconds: float, instant: float
    ) -> float:
        return sum(
            spent
            for when, spent in charges
            if instant - window_seconds < when <= instant
        )


def _clock_duration(seconds: float) -> str:
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, second = divmod(rest, 60)

    return f"{hours:02d}:{minutes:02d}:{second:02d}"
