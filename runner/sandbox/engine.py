"""The query engine: KQL over generated telemetry in DuckDB, in service shapes.

One DuckDB database holds every table in schema ``telemetry``. Each query gets
its own cursor, in which TEMP views named like the tables restrict
``Timestamp`` to the request's window (the Graph ``Timespan`` intersected with
the data window and now); duckdb-kql then runs the query against those views.
Results come back as the service serialises them: .NET type names, DateTime
with seven fractional digits, dynamic values as parsed JSON.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import duckdb_kql
import structlog

from .quotas import dotnet_timespan
from .settings import SandboxClock, SandboxSettings
from .telemetry import TABLES, TelemetryGenerator, time_column

log = structlog.get_logger(__name__)

SCHEMA = "telemetry"

_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"}
_LONG_TYPES = {"BIGINT", "HUGEINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist", re.IGNORECASE)
# DuckDB names a missing column in two ways: not found in the FROM clause, or
# found only in the SELECT list being built ("referenced before it is defined").
_MISSING_COLUMN = re.compile(
    r'(?:Referenced column "([^"]+)" not found'
    r'|Column "([^"]+)" referenced that exists in the SELECT clause)',
    re.IGNORECASE,
)


class QueryFailed(Exception):
    """The engine refused or failed a query; ``kind`` says why.

    Kinds: ``syntax``, ``unsupported``, ``missing_table``, ``missing_column``,
    ``semantic``, ``too_large``, ``timeout``.
    """

    def __init__(self, kind: str, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.name = name


@dataclass(frozen=True)
class Column:
    """One result column: its name and its .NET type name."""

    name: str
    type: str


@dataclass(frozen=True)
class QueryResult:
    """Rows ready for JSON, with what the query cost."""

    columns: list[Column]
    rows: list[list[Any]]
    wall_seconds: float
    size_bytes: int
    truncated: bool


class Engine:
    """Holds the telemetry database and runs KQL against a time window."""

    def __init__(self, settings: SandboxSettings, clock: SandboxClock) -> None:
        self.settings = settings
        self.clock = clock
        self.generator = TelemetryGenerator(
            seed=settings.seed,
            devices=settings.devices,
            users=settings.users,
            events_per_hour=settings.events_per_hour,
        )
        self._con = duckdb_kql.connect()
        self._fill_lock = threading.Lock()
        self._filled_until: datetime | None = None
        self.rows_loaded = 0

    def load(self) -> int:
        """Create the tables and fill ``days`` of history up to now; rows added."""
        self.generator.create_tables(self._con, schema=SCHEMA)
        end = _naive(self.clock.now())
        start = end - timedelta(days=self.settings.days)
        with self._fill_lock:
            rows = self.generator.fill(self._con, start, end, schema=SCHEMA)
            self._filled_until = end
            self.rows_loaded += rows

        return rows

    def arrive(self) -> int:
        """Fill the telemetry from where it stops up to now; rows added."""
        with self._fill_lock:
            now = _naive(self.clock.now())
            if self._filled_until is None or now <= self._filled_until:
                return 0
            # A clock moved far ahead (tests) gets at most the data window.
            start = max(
                self._filled_until, now - timedelta(days=self.settings.data_window_days)
            )
            cursor = self._con.cursor()
            try:
                rows = self.generator.fill(cursor, start, now, schema=SCHEMA)
            finally:
                cursor.close()
            self._filled_until = now
            self.rows_loaded += rows

        return rows

    def close(self) -> None:
        """Release the database."""
        self._con.close()

    def window(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> tuple[datetime, datetime]:
        """The effective window: *start*..*end* within the data window and now."""
        now = self.clock.now()
        earliest = now - timedelta(days=self.settings.data_window_days)
        lower = max(start, earliest) if start is not None else earliest
        upper = min(end, now) if end is not None else now

        return lower, upper

    def run(
        self,
        query: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        row_cap: int | None = None,
        size_cap: int | None = None,
        timeout: float | None = None,
    ) -> QueryResult:
        """Run *query* over rows with ``start <= Timestamp <= end``; blocking.

        Call it in a worker thread. ``QueryFailed`` carries the engine's
        message for a query that cannot run.
        """
        quotas = self.settings.quotas
        row_cap = quotas.row_cap if row_cap is None else row_cap
        size_cap = quotas.result_size_bytes if size_cap is None else size_cap
        timeout = quotas.request_timeout_seconds if timeout is None else timeout
        lower, upper = self.window(start, end)

        cursor = self._con.cursor()
        timer = _Watchdog(timeout, cursor)
        started_wall = time.perf_counter()
        # XXX: process CPU time also counts other threads (live arrival, a
        # concurrent query), so Stats may overstate one query's CPU a little.
        try:
            self._create_views(cursor, _naive(lower), _naive(upper))
            timer.start()
            # The hunting APIs are read-only: ingestion and database commands
            # would change the shared telemetry or create files on disk.
            relation = duckdb_kql.kql(
                cursor,
                query,
                query_now=_naive(self.clock.now()),
                allow_write=False,
            )
            columns = [
                Column(name, _dotnet_type(str(kind)))
                for name, kind in zip(relation.columns, relation.types, strict=True)
            ]
            raw_rows = relation.limit(row_cap + 1).fetchall()
            truncated = len(raw_rows) > row_cap
            del raw_rows[row_cap:]
        except duckdb_kql.KqlSyntaxError as error:
            raise QueryFailed("syntax", str(error)) from error
        except duckdb_kql.KqlUnsupportedError as error:
            raise QueryFailed("unsupported", str(error)) from error
        except duckdb_kql.KqlSchemaError as error:
            raise _schema_failure(error) from error
        except duckdb_kql.KqlError as error:
            raise QueryFailed("semantic", str(error)) from error
        except duckdb.InterruptException as error:
            raise QueryFailed(
                "timeout", f"Query execution has exceeded the allowed time {timeout}s."
            ) from error
        except duckdb.CatalogException as error:
            raise _catalog_failure(error) from error
        except duckdb.BinderException as error:
            raise _binder_failure(error) from error
        except duckdb.ParserException as error:
            raise QueryFailed("syntax", str(error)) from error
        except duckdb.Error as error:
            raise QueryFailed("semantic", str(error)) from error
        finally:
            timer.stop()
            wall_seconds = time.perf_counter() - started_wall
            cursor.close()

        rows, size_bytes = _serialise(columns, raw_rows, size_cap)

        return QueryResult(
            columns=columns,
            rows=rows,
            wall_seconds=wall_seconds,
            size_bytes=size_bytes,
            truncated=truncated,
        )

    def _create_views(
        self, cursor: duckdb.DuckDBPyConnection, lower: datetime, upper: datetime
    ) -> None:
        for table in TABLES:
            source = f'{SCHEMA}."{table}"'
            # Reference tables (the vulnerability catalogue) have no event time
            # and are served whole, whatever the window.
            column = time_column(table)
            if column is not None:
                where = (
                    f"WHERE \"{column}\" >= TIMESTAMP '{lower.isoformat(sep=' ')}' "
                    f"AND \"{column}\" <= TIMESTAMP '{upper.isoformat(sep=' ')}'"
                )
            else:
                where = ""
            cursor.execute(
                f'CREATE TEMP VIEW "{table}" AS SELECT * FROM {source} {where}'
            )


class _Watchdog:
    """Interrupts a cursor once its time is up, and again until it stops.

    One interrupt can land between two statements (duckdb-kql asks for schemas
    before it runs the query) and be lost, so it repeats until stopped.
    """

    def __init__(self, timeout: float, cursor: duckdb.DuckDBPyConnection) -> None:
        self._timeout = timeout
        self._cursor = cursor
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        if self._stopped.wait(self._timeout):
            return
        while not self._stopped.is_set():
            self._cursor.interrupt()
            self._stopped.wait(0.05)


def format_datetime(value: datetime | date) -> str:
    """A DateTime as the service writes it: UTC, seven fractional digits, ``Z``."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)

    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"


def _dotnet_type(duckdb_type: str) -> str:
    base = duckdb_type.split("(")[0].strip()
    if base in ("VARCHAR", "ENUM"):
        return "String"
    if base.startswith("TIMESTAMP") or base == "DATE":
        return "DateTime"
    if base in _INTEGER_TYPES:
        return "Int32"
    if base in _LONG_TYPES:
        return "Int64"
    if base in ("DOUBLE", "FLOAT"):
        return "Double"
    if base == "DECIMAL":
        return "Decimal"
    if base == "BOOLEAN":
        return "Boolean"
    if base == "UUID":
        return "Guid"
    if base == "INTERVAL":
        return "TimeSpan"

    return "Dynamic"


def _serialise(
    columns: list[Column], raw_rows: list[tuple[Any, ...]], size_cap: int
) -> tuple[list[list[Any]], int]:
    kinds = [column.type for column in columns]
    # Every row is sent as an object naming its columns: `"Name": ` per value
    # on top of the row's values as a JSON list.
    names_size = sum(
        len(json.dumps(column.name, ensure_ascii=False).encode()) + 2
        for column in columns
    )
    rows: list[list[Any]] = []
    size = 0
    for raw in raw_rows:
        row = [_value(kind, value) for kind, value in zip(kinds, raw, strict=True)]
        size += (
            len(json.dumps(row, ensure_ascii=False, default=str).encode())
            + names_size
            + 1
        )
        if size > size_cap:
            raise QueryFailed(
                "too_large",
                "Query execution has exceeded the allowed result size. Optimize "
                "your query by taking fewer results and try again.",
            )
        rows.append(row)

    return rows, size


def _value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "DateTime":
        # DuckDB hands instants outside Python's (and Kusto's) range over as
        # text such as '10000-01-01 00:00:00'; Kusto's overflow is null.
        if not isinstance(value, datetime | date):
            return None
        return format_datetime(value)
    if kind == "TimeSpan":
        return dotnet_timespan(value.total_seconds())
    if kind == "Guid":
        return str(value)
    if kind == "Decimal":
        return float(value)
    if kind == "Dynamic":
        return _dynamic(value)

    return _real(value)


def _real(value: Any) -> Any:
    # JSON has no NaN or infinities; Kusto writes them as these strings.
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"

    return value


def _dynamic(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return _dynamic(parsed) if isinstance(parsed, dict | list) else _real(parsed)
    if isinstance(value, dict):
        return {str(key): _dynamic_item(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_dynamic_item(item) for item in value]

    return _dynamic_item(value)


def _dynamic_item(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return format_datetime(value)
    if isinstance(value, timedelta):
        return dotnet_timespan(value.total_seconds())
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict | list | tuple):
        return _dynamic(value)

    return _real(value)


def _schema_failure(error: duckdb_kql.KqlSchemaError) -> QueryFailed:
    name = str(getattr(error, "name", "") or "")
    text = str(error)
    kind = "missing_table" if "table" in text.lower() else "missing_column"

    return QueryFailed(
        kind,
        f"'{name}': Failed to resolve table or column expression named '{name}'. "
        f"{text}",
        name=name,
    )


def _catalog_failure(error: duckdb.CatalogException) -> QueryFailed:
    match = _MISSING_TABLE.search(str(error))
    if match is None:
        return QueryFailed("semantic", str(error))
    name = match.group(1).strip('"')

    return QueryFailed(
        "missing_table",
        f"'{name}': Failed to resolve table or column expression named '{name}'",
        name=name,
    )


def _binder_failure(error: duckdb.BinderException) -> QueryFailed:
    match = _MISSING_COLUMN.search(str(error))
    if match is None:
        return QueryFailed("semantic", str(error))
    name = match.group(1) or match.group(2)

    return QueryFailed(
        "missing_column",
        f"Failed to resolve scalar expression named '{name}'. {error}",
        name=name,
    )


def _naive(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        return instant

    return instant.astimezone(UTC).replace(tzinfo=None)
