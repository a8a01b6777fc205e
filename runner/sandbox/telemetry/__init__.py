"""Generated Defender telemetry with planted attack stories.

``TelemetryGenerator`` fills DuckDB tables shaped like Defender's advanced
hunting schema (``TABLES``) with everyday activity drawn in SQL from templates,
plus the ``STORIES`` the shipped hunts are written to find.
"""

from __future__ import annotations

from .generator import TelemetryGenerator
from .schema import DUCKDB_TYPES, TABLES, time_column
from .stories import STORIES, Story

__all__ = [
    "DUCKDB_TYPES",
    "STORIES",
    "TABLES",
    "Story",
    "TelemetryGenerator",
    "time_column",
]
