"""Fixtures for the sink tests: records, sink specs and a TLS authority."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.records import Record, event_id

WINDOW_END = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def make_record(
    number: int,
    *,
    hunt: str = "suspicious-powershell",
    severity: str = "high",
    tags: tuple[str, ...] = ("execution",),
    row: dict[str, Any] | None = None,
    tenant: str = "contoso",
) -> Record:
    """A record whose row is unique for *number*."""
    row = (
        row
        if row is not None
        else {
            "Timestamp": "2026-12-03T11:59:00Z",
            "DeviceName": f"host-{number}.contoso.com",
            "ProcessCommandLine": f"powershell -enc {number}",
            "Count": number,
        }
    )

    return Record(
        event_id=event_id(hunt, tenant, row),
        hunt_id=hunt,
        hunt_name=hunt.replace("-", " ").title(),
        severity=severity,
        tenant=tenant,
        window_start=WINDOW_END - timedelta(hours=1),
        window_end=WINDOW_END,
        run_id=hashlib.sha1(hunt.encode()).hexdigest()[:12],
        row=row,
        tags=tags,
        tactics=("Execution",),
        techniques=("T1059.001",),
    )


@pytest.fixture
def records() -> Callable[..., list[Record]]:
    """Factory: ``records(n, **kwargs)`` gives n distinct records."""

    def build(count: int, start: int = 0, **kwargs: Any) -> list[Record]:
        return [make_record(number, **kwargs) for number in range(start, start + count)]

    return build
