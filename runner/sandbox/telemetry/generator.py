"""The telemetry generator the sandbox fills its DuckDB database with."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import structlog

from .background import drop_scratch, insert_background, load_estate
from .estate import Estate
from .reference import REFERENCE_ROWS
from .scene import Row, Scene
from .schema import DUCKDB_TYPES, column_types, create_tables, time_column
from .stories import STORIES

log = structlog.get_logger(__name__)

_HOUR_US = 3600 * 10**6
_EPOCH = datetime(1970, 1, 1)


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)

    return moment


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


class TelemetryGenerator:
    """Generates Defender tables for one seeded organisation, hour by hour.

    Rows are a pure function of (seed, hour bucket): filling ``[a, c)`` gives
    the same rows as filling ``[a, b)`` and then ``[b, c)``.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        devices: int = 40,
        users: int = 60,
        events_per_hour: int = 2000,
    ) -> None:
        self.seed = seed
        self.events_per_hour = events_per_hour
        self.estate = Estate(seed=seed, devices=devices, users=users)

    def create_tables(
        self, con: duckdb.DuckDBPyConnection, schema: str = "telemetry"
    ) -> None:
        """Create the schema and every table the sandbox serves.

        Reference tables, which have no time column, get their rows here, once.
        """
        create_tables(con, schema)
        for table, rows in REFERENCE_ROWS.items():
            found = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            if found == (0,):
                _insert_rows(con, schema, table, rows)

    def fill(
        self,
        con: duckdb.DuckDBPyConnection,
        start: datetime,
        end: datetime,
        schema: str = "telemetry",
    ) -> int:
        """Insert every row with ``start <= Timestamp < end``; return rows inserted.

        Aware datetimes are converted to UTC; naive ones are taken as UTC.
        """
        start, end = _naive_utc(start), _naive_utc(end)
        if end <= start:
            return 0
        start_us, end_us = _micros(start), _micros(end)
        first, last = start_us // _HOUR_US, (end_us - 1) // _HOUR_US
        buckets = [(hour, self._events_in(hour)) for hour in range(first, last + 1)]

        load_estate(con, self.estate)
        try:
            rows = insert_background(
                con, self.estate, schema, buckets, start_us, end_us
            )
        finally:
            drop_scratch(con)
        rows += self._insert_stories(con, schema, buckets, start, end)
        log.debug(
            "telemetry.filled",
            start=start.isoformat(),
            end=end.isoformat(),
            rows=rows,
            buckets=len(buckets),
        )

        return rows

    def story_rows(self, hour: int) -> list[tuple[str, Row]]:
        """Every planted row of one hour bucket (hours since the epoch)."""
        emitted: list[tuple[str, Row]] = []
        bucket_start = _EPOCH + timedelta(hours=hour)
        for story in STORIES:
            rng = random.Random(f"{self.seed}:{hour}:{story.name}")
            minute = rng.randrange(0, 27)
            for occurrence in range(2):
                second = rng.randrange(0, 60)
                start = bucket_start + timedelta(
                    minutes=minute + 30 * occurrence, seconds=second
                )
                scene = Scene(
                    self.estate,
                    random.Random(f"{self.seed}:{hour}:{story.name}:{occurrence}"),
                    start,
                )
                story.plant(scene)
                emitted.extend(scene.rows)

        return emitted

    def _events_in(self, hour: int) -> int:
        """Busier in office hours on weekdays, quieter at night and weekends."""
        moment = _EPOCH + timedelta(hours=hour)
        busy = moment.weekday() < 5 and 7 <= moment.hour < 19
        factor = 1.4 if busy else 0.75
        jitter = random.Random(f"{self.seed}:volume:{hour}").uniform(0.9, 1.1)

        return max(1, round(self.events_per_hour * factor * jitter))

    def _insert_stories(
        self,
        con: duckdb.DuckDBPyConnection,
        schema: str,
        buckets: list[tuple[int, int]],
        start: datetime,
        end: datetime,
    ) -> int:
        low = start.isoformat(sep=" ", timespec="microseconds")
        high = end.isoformat(sep=" ", timespec="microseconds")
        by_table: dict[str, list[Row]] = defaultdict(list)
        for hour, _ in buckets:
            for table, row in self.story_rows(hour):
                moment = row.get(time_column(table) or "") or row["Timestamp"]
                if low <= moment < high:
                    by_table[table].append(row)

        inserted = 0
        for table, rows in by_table.items():
            inserted += _insert_rows(con, schema, table, rows)

        return inserted


def _insert_rows(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, rows: list[Row]
) -> int:
    """Insert dictionaries into ``table``, giving unset strings Kusto's ''."""
    types = column_types(table)
    present = {column for row in rows for column in row if column in types}
    present.update({"Timestamp", "TimeGenerated"} & types.keys())
    structure = {
        column: DUCKDB_TYPES[kql_type]
        for column, kql_type in types.items()
        if column in present
    }
    lines = []
    for row in rows:
        out: dict[str, Any] = {c: v for c, v in row.items() if c in structure}
        if "TimeGenerated" in structure:
            out.setdefault("TimeGenerated", row.get("Timestamp"))
        lines.append(json.dumps(out))
    select = ", ".join(
        f'coalesce(s."{column}", \'\') AS "{column}"'
        if types[column] == "string"
        else f's."{column}"'
        for column in structure
    )
    result = con.execute(
        f'INSERT INTO "{schema}"."{table}" BY NAME SELECT {select} FROM ('
        "SELECT json_transform(line, $2) AS s FROM (SELECT unnest($1::VARCHAR[]) "
        "AS line))",
        [lines, json.dumps(structure)],
    ).fetchone()

    return int(result[0]) if result else 0
