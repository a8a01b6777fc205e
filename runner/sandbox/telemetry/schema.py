"""The Defender tables the sandbox serves, and their DuckDB form.

The column lists come from ``schemas.json`` next to this package, the
product's own normalised copy of Microsoft's published schemas.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import duckdb

SCHEMAS_PATH = Path(__file__).parents[1] / "schemas.json"


def _load_tables() -> dict[str, list[tuple[str, str]]]:
    raw = json.loads(SCHEMAS_PATH.read_text(encoding="utf-8"))

    return {
        table: [(column, kql_type) for column, kql_type in columns]
        for table, columns in raw.items()
        if not table.startswith("_")
    }


TABLES: dict[str, list[tuple[str, str]]] = _load_tables()

DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "datetime": "TIMESTAMP",
    "long": "BIGINT",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "real": "DOUBLE",
    "dynamic": "JSON",
    "guid": "VARCHAR",
    "timespan": "INTERVAL",
}


# Cached: the generator asks once per planted row, tens of thousands per load.
@cache
def time_column(table: str) -> str | None:
    """The column that places a row of ``table`` in time.

    ``None`` for reference tables such as DeviceTvmSoftwareVulnerabilitiesKB,
    whose rows describe the world rather than an event.
    """
    names = {column for column, _ in TABLES[table]}
    for column in ("Timestamp", "TimeGenerated"):
        if column in names:
            return column

    return None


def column_types(table: str) -> dict[str, str]:
    """Column name to KQL type for one table, in schema order."""
    return dict(TABLES[table])


def create_table_sql(table: str, schema: str) -> str:
    """DDL for one table.

    Kusto strings are never null, only empty; a default of ``''`` keeps
    ``isempty`` and ``!= ""`` behaving as they do in Defender for every
    column the generator leaves out.
    """
    columns = []
    for column, kql_type in TABLES[table]:
        default = " DEFAULT ''" if kql_type == "string" else ""
        columns.append(f'"{column}" {DUCKDB_TYPES[kql_type]}{default}')

    return f'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" ({", ".join(columns)})'


def create_tables(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """Create ``schema`` and every table in it, leaving existing ones alone."""
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    for table in TABLES:
        con.execute(create_table_sql(table, schema))
