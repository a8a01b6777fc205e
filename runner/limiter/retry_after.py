"""Reading what a 429 says: the ``Retry-After`` header and the window its body names."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime


def parse_retry_after(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Return the ``Retry-After`` delay in seconds; ``None`` if absent or unreadable.

    Accepts any header case, integer or fractional seconds, and an HTTP date
    (measured against *now*, epoch seconds, default the system time).
    """
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None or not value.strip():
        return None

    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            # RFC 9110 dates are always GMT; "-0000" arrives without a zone.
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None

    return max(seconds, 0.0)


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_window(text: str) -> float | None:
    """Return the seconds of a .NET TimeSpan such as ``00:01:00`` or ``1.00:00:00``."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        return None

    days, hours, minutes, seconds = match.groups()
    return (
        int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    )
