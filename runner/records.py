"""The record: one row a hunt found, with everything a receiver needs to act on it.

A record carries the hunt's identity, the tenant, the window it covered, the run
that fetched it, and the row exactly as the service sent it. Its ``event_id`` is
stable: the same row found by the same hunt in the same tenant always gets the
same id, whichever run fetched it, so receivers (and our outbox) can drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SEVERITIES = ("informational", "low", "medium", "high")


def severity_rank(severity: str) -> int:
    """Position of *severity* in ``SEVERITIES``; unknown names rank lowest."""
    try:
        return SEVERITIES.index(severity.lower())
    except ValueError:
        return 0


def utf8_safe(text: str) -> str:
    """*text* with any lone UTF-16 surrogate written as its ``\\uXXXX`` escape.

    The service may send a string holding half of a surrogate pair (JSON
    allows ``"\\ud83d"``, and Windows command lines can hold one); Python keeps
    it as a character that no UTF-8 encoder accepts.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    return text


def json_text(value: Any) -> str:
    """Compact JSON with UTF-8 characters kept, always encodable as UTF-8.

    A lone surrogate inside a string becomes its JSON escape, which reads back
    as the same value.
    """
    return utf8_safe(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def event_id(hunt: str, tenant: str, row: Mapping[str, Any]) -> str:
    """A stable id from the hunt, the tenant and the row's content."""
    canonical = json.dumps(
        [hunt, tenant, row], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    # surrogatepass: a lone surrogate gets an id too; other text, the same bytes.
    data = canonical.encode("utf-8", "surrogatepass")

    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(frozen=True)
class Record:
    """One row found by one run of one hunt in one tenant."""

    event_id: str
    hunt_id: str
    hunt_name: str
    severity: str
    tenant: str
    window_start: datetime
    window_end: datetime
    run_id: str
    row: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    truncated: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data, in the order receivers read it."""
        return {
            "event_id": self.event_id,
            "hunt": {
                "id": self.hunt_id,
                "name": self.hunt_name,
                "severity": self.severity,
                "tags": list(self.tags),
                "tactics": list(self.tactics),
                "techniques": list(self.techniques),
            },
            "tenant": self.tenant,
            "window": {
                "start": _format_time(self.window_start),
                "end": _format_time(self.window_end),
            },
            "run_id": self.run_id,
            "row": dict(self.row),
        }

    def to_json(self) -> str:
        """One line of JSON, UTF-8 characters kept as they are (see ``json_text``)."""
        return json_text(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Rebuild a record from ``to_dict()`` output (the outbox stores that).

        Raises ``KeyError``, ``TypeError`` or ``ValueError`` for data of any
        other shape, so that a damaged stored record is found here rather
        than by a sink in the middle of a send, on every retry.
        """
        hunt = _mapping(data, "hunt")
        window = _mapping(data, "window")

        return cls(
            event_id=_text(data, "event_id"),
            hunt_id=_text(hunt, "id", "hunt."),
            hunt_name=_text(hunt, "name", "hunt."),
            severity=_text(hunt, "severity", "hunt."),
            tags=_texts(hunt, "tags"),
            tactics=_texts(hunt, "tactics"),
            techniques=_texts(hunt, "techniques"),
            tenant=_text(data, "tenant"),
            window_start=_moment(window, "start"),
            window_end=_moment(window, "end"),
            run_id=_text(data, "run_id"),
            row=_mapping(data, "row"),
        )


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data[key]
    if not isinstance(value, Mapping):
        raise TypeError(f"{key} is {type(value).__name__}, not an object")

    return value


def _text(data: Mapping[str, Any], key: str, where: str = "") -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{where}{key} is {type(value).__name__}, not a string")

    return value


def _texts(hunt: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = hunt.get(key, ())
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) for item in value
    ):
        raise TypeError(f"hunt.{key} is not a list of strings")

    return tuple(value)


def _moment(window: Mapping[str, Any], key: str) -> datetime:
    moment = datetime.fromisoformat(_text(window, key, "window."))
    if moment.tzinfo is None:
        raise ValueError(f"window.{key} has no time zone")

    return moment


def _format_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
