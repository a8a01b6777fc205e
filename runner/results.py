"""Hunting responses in both shapes, normalised; query statistics; records.

Graph answers ``{"schema": [{"name", "type"}], "results": [...]}``; the legacy
endpoints answer ``{"Stats": ..., "Schema": [{"Name", "Type"}], "Results": [...]}``.
Values are kept exactly as the service sent them: a record carries the row the
analyst would have seen in the portal, not our reinterpretation of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.records import Record, event_id

# .NET TimeSpan text: [-][d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(
    r"^(?P<sign>-)?(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):"
    r"(?P<seconds>\d{2}(?:\.\d{1,7})?)$"
)


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string such as ``00:00:19.0625000``."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan: {text!r}")
    seconds = (
        int(match["days"] or 0) * 86400
        + int(match["hours"]) * 3600
        + int(match["minutes"]) * 60
        + float(match["seconds"])
    )

    return -seconds if match["sign"] else seconds


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class QueryResult:
    """The rows of one call, its schema, and what it cost if the service said."""

    columns: tuple[Column, ...]
    rows: tuple[Mapping[str, Any], ...]
    cpu_seconds: float | None
    execution_seconds: float | None


def _first(body: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in body:
            return body[key]

    return None


def parse_response(body: Mapping[str, Any]) -> QueryResult:
    """Normalise a hunting response of either shape; ``ValueError`` if it is neither."""
    if not isinstance(body, Mapping):
        raise ValueError(f"response is a JSON {type(body).__name__}, not an object")
    schema = _first(body, "schema", "Schema")
    results = _first(body, "results", "Results")
    if not isinstance(results, list):
        raise ValueError("response has no results list")
    if schema is not None and not isinstance(schema, list):
        raise ValueError("response schema is not a list")
    columns = tuple(
        Column(str(_first(c, "name", "Name")), str(_first(c, "type", "Type")))
        for c in (schema or [])
        if isinstance(c, Mapping)
    )
    if not all(isinstance(row, Mapping) for row in results):
        raise ValueError("a result row is not an object")
    stats = _first(body, "Stats", "stats")

    return QueryResult(
        columns=columns,
        rows=tuple(results),
        cpu_seconds=_cpu_seconds(stats),
        execution_seconds=_execution_seconds(stats),
    )


def _cpu_seconds(stats: Any) -> float | None:
    if not isinstance(stats, Mapping):
        return None
    usage = stats.get("resource_usage")
    cpu = usage.get("cpu") if isinstance(usage, Mapping) else None
    total = cpu.get("total cpu") if isinstance(cpu, Mapping) else None
    if not isinstance(total, str):
        return None
    try:
        return parse_timespan(total)
    except ValueError:
        return None


def _execution_seconds(stats: Any) -> float | None:
    if not isinstance(stats, Mapping):
        return None
    value = stats.get("ExecutionTime")

    return float(value) if isinstance(value, int | float) else None


def to_records(
    rows: Sequence[Mapping[str, Any]],
    *,
    hunt_id: str,
    hunt_name: str,
    severity: str,
    tenant: str,
    window: tuple[datetime, datetime],
    run_id: str,
    tags: Sequence[str] = (),
    tactics: Sequence[str] = (),
    techniques: Sequence[str] = (),
) -> list[Record]:
    """One record per row, each with its stable event id."""
    return [
        Record(
            event_id=event_id(hunt_id, tenant, row),
            hunt_id=hunt_id,
            hunt_name=hunt_name,
            severity=severity,
            tenant=tenant,
            window_start=window[0],
            window_end=window[1],
            run_id=run_id,
            row=row,
            tags=tuple(tags),
            tactics=tuple(tactics),
            techniques=tuple(techniques),
        )
        for row in rows
    ]
