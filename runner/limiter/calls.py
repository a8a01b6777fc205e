"""The call windows of one tenant: a sliding log of the times calls were sent.

A call may go when fewer than ``count`` calls were sent in the last
``per_seconds`` of every window, each window widened by ``skew_margin`` (a
fraction of its length) plus ``skew_floor`` seconds. A server that counts
receive times in a sliding window can then refuse a call only if an earlier
call was delayed on the way by more than the margin beyond a later one; a
fixed-window bucket or a token bucket with a burst above ``count`` gives no
such promise. The floor exists because delays vary by tens of milliseconds
whatever the window's length: without it, a window compressed to a second has
a margin of milliseconds, below the jitter of a loaded host.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.config import Rate


@dataclass
class _Window:
    rate: Rate
    span: float
    blocked_until: float = 0.0


class CallLog:
    """Send times of the calls still inside at least one window."""

    def __init__(
        self, rates: Sequence[Rate], *, skew_margin: float, skew_floor: float = 0.0
    ) -> None:
        self._windows = [
            _Window(rate, rate.per_seconds * (1 + skew_margin) + skew_floor)
            for rate in rates
        ]
        self._longest = max((window.span for window in self._windows), default=0.0)
        self._sent: list[float] = []

    @property
    def longest(self) -> float:
        """The span of the longest call window (0 without any)."""
        return self._longest

    def record(self, at: float) -> None:
        """Count a call sent at *at*."""
        bisect.insort(self._sent, at)

    def restamp(self, recorded: float, sent: float) -> None:
        """Move a call recorded at its grant to the later time it was sent."""
        # Moving a record later only keeps it in its windows longer, which
        # errs on the safe side.
        index = bisect.bisect_left(self._sent, recorded)
        if (
            sent > recorded
            and index < len(self._sent)
            and self._sent[index] == recorded
        ):
            del self._sent[index]
            bisect.insort(self._sent, sent)

    def unrecord(self, at: float) -> None:
        """Forget a call recorded at *at* that was never sent."""
        index = bisect.bisect_left(self._sent, at)
        if index < len(self._sent) and self._sent[index] == at:
            del self._sent[index]

    def opens_at(self, now: float) -> float | None:
        """Return ``None`` if a call may go now, else when one may (if none is sent)."""
        opens: list[float] = []
        for window in self._windows:
            frees_at = self._frees_at(window, now)
            if frees_at is not None:
                opens.append(frees_at)
            if window.blocked_until > now:
                opens.append(window.blocked_until)

        return max(opens) if opens else None

    def block(
        self, per_seconds: float, retry_after: float | None, now: float
    ) -> float | None:
        """Treat the window of *per_seconds* as full after a 429 naming it.

        Returns when the window opens again, or ``None`` when no configured
        window has that length.
        """
        window = next(
            (w for w in self._windows if math.isclose(w.rate.per_seconds, per_seconds)),
            None,
        )
        if window is None:
            return None

        if retry_after is not None:
            # Every call the server counts in a sliding window has left it
            # one window later: a longer Retry-After is not about this window.
            retry_after = min(retry_after, window.span)
        frees_at = self._frees_at(window, now)
        if frees_at is not None:
            until = max(frees_at, now + (retry_after or 0.0))
        else:
            # Our log shows room, so the server counted calls we did not
            # (another client, a restart): assume a full window from now.
            until = now + min(window.rate.per_seconds, retry_after or math.inf)
        window.blocked_until = max(window.blocked_until, until)

        return until

    def forget(self, now: float) -> None:
        """Drop calls that have left every window."""
        drop = self._first_inside(self._longest, now)
        if drop:
            del self._sent[:drop]

    def levels(self, now: float) -> list[dict[str, Any]]:
        """Return each window's use for ``snapshot()``."""
        levels = []
        for window in self._windows:
            used = len(self._sent) - self._first_inside(window.span, now)
            levels.append(
                {
                    "count": window.rate.count,
                    "per_seconds": window.rate.per_seconds,
                    "used": used,
                    "left": max(window.rate.count - used, 0),
                    "blocked_until": (
                        window.blocked_until if window.blocked_until > now else None
                    ),
                }
            )

        return levels

    def _frees_at(self, window: _Window, now: float) -> float | None:
        first = self._first_inside(window.span, now)
        inside = len(self._sent) - first
        if inside < window.rate.count:
            return None

        return self._sent[first + inside - window.rate.count] + window.span

    def _first_inside(self, span: float, now: float) -> int:
        # A call sent at t is inside the window while t + span > now. Every
        # comparison uses that one expression, so a deadline computed as
        # t + span opens the window exactly when the clock reaches it and the
        # limiter never wakes to find it still shut.
        index = bisect.bisect_right(self._sent, now - span)
        while index > 0 and self._sent[index - 1] + span > now:
            index -= 1
        while index < len(self._sent) and self._sent[index] + span <= now:
            index += 1

        return index
