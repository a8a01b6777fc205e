"""Every shipped hunt finds its planted story in generated telemetry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import duckdb_kql
import pytest
import yaml

from runner.sandbox.telemetry import TABLES, TelemetryGenerator

JOBS = sorted((Path(__file__).parents[1] / "jobs").glob("*.yaml"))
NOW = datetime(2026, 12, 3, 15, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def database() -> duckdb.DuckDBPyConnection:
    con = duckdb_kql.connect()
    generator = TelemetryGenerator(seed=7)
    generator.create_tables(con)
    generator.fill(con, NOW - timedelta(hours=3), NOW)
    for table in TABLES:
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM telemetry."{table}"')

    return con


def _lets(start: datetime, end: datetime) -> str:
    def kql_time(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    return (
        f"let HuntStart = datetime({kql_time(start)});\n"
        f"let HuntEnd = datetime({kql_time(end)});\n"
    )


def test_at_least_fourteen_hunts_ship() -> None:
    """The jobs folder ships at least fourteen hunts, one per technique."""
    assert len(JOBS) >= 14


@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_hunt_finds_its_story(database: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The hunt returns at least one row over the last two hours of telemetry."""
    hunt = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert "HuntStart" in hunt["query"] and "HuntEnd" in hunt["query"]

    query = _lets(NOW - timedelta(hours=2), NOW) + hunt["query"]
    rows = duckdb_kql.kql(database.cursor(), query).fetchall()

    assert len(rows) >= 1


@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_hunt_file_has_the_documented_keys(path: Path) -> None:
    """Each hunt file carries the keys of the documented hunt format."""
    hunt = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert hunt["id"] == path.stem
    assert hunt["severity"] in ("informational", "low", "medium", "high")
    assert set(hunt["schedule"]) <= {"every", "cron", "jitter"}
    assert 0 <= hunt["priority"] <= 10
    assert hunt["techniques"] and hunt["tactics"]
