"""Durations as users write them: ``30s``, ``15m``, ``1h30m``, ``2d``, ``PT15M``.

The short form is what our files use; the ISO 8601 form is what Sentinel
files and Microsoft's APIs use, parsed by ``isodate``. A bare number is
refused, because nobody can tell from ``lookback: 15`` whether they meant
seconds or minutes.
"""

from __future__ import annotations

import re
from datetime import timedelta

import isodate

__all__ = ["MAX_DURATION", "format_duration", "parse_duration"]

# The longest duration any setting can mean; ten years.
MAX_DURATION = timedelta(days=3650)

_SHORT = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


def parse_duration(value: object) -> timedelta:
    """The duration *value* names; ``ValueError`` with a message a user can act on."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a duration; write e.g. 15m, 1h or PT15M")
    if not isinstance(value, str):
        raise ValueError(
            f"{value} has no unit; write {value}s, {value}m, {value}h or {value}d"
        )

    text = value.strip()
    match = _SHORT.match(text.lower()) if text else None
    if match and any(match.group(unit) for unit in "dhms"):
        try:
            parsed = timedelta(
                days=int(match.group("d") or 0),
                hours=int(match.group("h") or 0),
                minutes=int(match.group("m") or 0),
                seconds=float(match.group("s") or 0),
            )
        except OverflowError:
            parsed = None
    elif text[:1] in ("P", "p"):
        parsed = _iso_duration(text)
    else:
        raise ValueError(
            f"{value!r} is not a duration; write e.g. 30s, 15m, 1h30m, 2d or PT15M"
        )
    if parsed is None or parsed > MAX_DURATION:
        # Times this far back or ahead do not exist for the service (and would
        # overflow datetime arithmetic).
        raise ValueError(f"{value!r} is longer than {MAX_DURATION.days}d")

    return parsed


def _iso_duration(text: str) -> timedelta | None:
    try:
        parsed = isodate.parse_duration(text.upper())
    except OverflowError:
        return None
    except (isodate.ISO8601Error, ValueError):
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration; write e.g. PT15M, PT1H or P1D"
        ) from None
    if not isinstance(parsed, timedelta):
        # Months and years have no fixed length; a schedule needs one.
        raise ValueError(f"{text!r} uses months or years; write days instead (P30D)")
    if parsed < timedelta(0):
        raise ValueError(f"{text!r} is negative")

    return parsed


def format_duration(value: timedelta) -> str:
    """*value* in the short form (``1h30m``), the inverse of ``parse_duration``."""
    total = value.total_seconds()
    if total == 0:
        return "0s"

    sign = "-" if total < 0 else ""
    seconds = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if seconds:
        shown = int(seconds) if float(seconds).is_integer() else round(seconds, 6)
        parts.append(f"{shown}s")

    return sign + "".join(parts)
