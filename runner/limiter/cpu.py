"""The CPU budget of one tenant: what queries cost, per sliding window."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from runner.config import Rate


def update_average(previous: float | None, sample: float, alpha: float = 0.3) -> float:
    """Fold *sample* into an exponential moving average (the first sample starts it)."""
    if previous is None:
        return sample

    return alpha * sample + (1 - alpha) * previous


class _Window:
    """The charges still inside one CPU window, with their running total."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.charges: deque[tuple[float, float]] = deque()
        self.used = 0.0

    def forget(self, now: float) -> None:
        while self.charges and self.charges[0][0] + self.rate.per_seconds <= now:
            _, cpu = self.charges.popleft()
            self.used -= cpu
        if not self.charges:
            # A running total drifts with every subtraction; an empty window
            # is exactly empty.
            self.used = 0.0


class CpuLedger:
    """CPU seconds charged to a tenant, checked against every CPU window.

    Callers ``forget(now)`` before asking, with ``now`` never going back.
    """

    def __init__(self, rates: Sequence[Rate]) -> None:
        self._windows = [_Window(rate) for rate in rates]

    @property
    def longest(self) -> float:
        """The length of the longest CPU window (0 without any)."""
        return max((window.rate.per_seconds for window in self._windows), default=0.0)

    def charge(self, at: float, cpu_seconds: float) -> None:
        """Record *cpu_seconds* spent at *at* (no earlier than any charge before)."""
        for window in self._windows:
            window.charges.append((at, cpu_seconds))
            window.used += cpu_seconds

    def fits_at(self, expected: float, reserved: float, now: float) -> float | None:
        """Return when *expected* fits every window beside *reserved* (<= now: now).

        ``None`` means time alone cannot make room: a running query's
        reservation has to go first.
        """
        fits_at = now
        for window in self._windows:
            budget = float(window.rate.count)
            # A hunt dearer than a whole window goes when the window is
            # empty rather than never.
            room = budget - reserved - min(expected, budget)
            if room < 0:
                return None
            used = window.used
            for at, cpu in window.charges:
                if used <= room:
                    break
                used -= cpu
                fits_at = max(fits_at, at + window.rate.per_seconds)

        return fits_at

    def forget(self, now: float) -> None:
        """Drop charges that have left their windows."""
        for window in self._windows:
            window.forget(now)

    def levels(self, reserved: float, now: float) -> list[dict[str, Any]]:
        """Return each window's use for ``snapshot()``."""
        self.forget(now)

        return [
            {
                "budget_s": window.rate.count,
                "per_seconds": window.rate.per_seconds,
                "used_s": round(window.used, 3),
                "reserved_s": round(reserved, 3),
                "left_s": round(
                    max(window.rate.count - window.used - reserved, 0.0), 3
                ),
            }
            for window in self._windows
        ]
