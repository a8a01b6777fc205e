"""The telemetry generator: schema fidelity, determinism, additivity, stories."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import duckdb_kql
import pytest
import yaml
from shared_corpus import CORPUS, needs_corpus

from runner.sandbox.engine import Engine
from runner.sandbox.settings import SandboxClock, SandboxSettings
from runner.sandbox.telemetry import (
    DUCKDB_TYPES,
    STORIES,
    TABLES,
    Story,
    TelemetryGenerator,
    time_column,
)
from runner.sandbox.telemetry.reference import REFERENCE_ROWS

SCHEMAS = Path(__file__).parents[2] / "runner" / "sandbox" / "schemas.json"
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
TIMED_TABLES = [table for table in TABLES if time_column(table) is not None]


def _fresh(seed: int = 3) -> tuple[TelemetryGenerator, duckdb.DuckDBPyConnection]:
    generator = TelemetryGenerator(seed=seed, events_per_hour=300)
    con = duckdb_kql.connect()
    generator.create_tables(con)

    return generator, con


def _snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    return {
        table: sorted(
            con.execute(f'SELECT * FROM telemetry."{table}"').fetchall(), key=repr
        )
        for table in TABLES
    }


@needs_corpus
def test_schemas_json_covers_the_corpus_tables() -> None:
    """schemas.json lists every corpus table with KQL type names only."""
    raw = json.loads(SCHEMAS.read_text(encoding="utf-8"))
    corpus_tables = {path.stem for path in (CORPUS / "defender-schemas").glob("*.json")}

    assert "MIT" in raw["_notice"]
    assert corpus_tables <= set(raw)
    for table, columns in TABLES.items():
        names = [name for name, _ in columns]
        assert len(names) == len(set(names)), table
        assert {kql_type for _, kql_type in columns} <= set(DUCKDB_TYPES), table
        assert not {"TenantId", "SourceSystem", "Type"} & set(names), table


def test_created_tables_match_the_schema() -> None:
    """Each DuckDB table has the schema's columns, in order, with mapped types."""
    _, con = _fresh()

    for table, columns in TABLES.items():
        described = con.execute(f'DESCRIBE telemetry."{table}"').fetchall()
        assert [(row[0], row[1]) for row in described] == [
            (name, DUCKDB_TYPES[kql_type]) for name, kql_type in columns
        ]


def test_same_seed_gives_same_rows_and_other_seed_differs() -> None:
    """Two generators with one seed agree row for row; another seed does not."""
    first, con_a = _fresh(seed=3)
    second, con_b = _fresh(seed=3)
    third, con_c = _fresh(seed=4)
    end = START + timedelta(hours=2)
    first.fill(con_a, START, end)
    second.fill(con_b, START, end)
    third.fill(con_c, START, end)

    assert _snapshot(con_a) == _snapshot(con_b)
    assert _snapshot(con_a) != _snapshot(con_c)


def test_fill_is_additive_over_split_windows() -> None:
    """Filling [a, c) equals filling [a, b) then [b, c) for a cut inside an hour."""
    whole, con_whole = _fresh()
    split, con_split = _fresh()
    cut = START + timedelta(minutes=97, seconds=13)
    end = START + timedelta(hours=3)

    rows_whole = whole.fill(con_whole, START, end)
    rows_split = split.fill(con_split, START, cut) + split.fill(con_split, cut, end)

    assert rows_whole == rows_split > 0
    assert _snapshot(con_whole) == _snapshot(con_split)


def test_rows_stay_inside_the_requested_window() -> None:
    """No table gets a row before start or at or after end, naive UTC stored."""
    generator, con = _fresh()
    start = START + timedelta(minutes=10)
    end = start + timedelta(minutes=50)
    generator.fill(con, start, end)

    for table in TIMED_TABLES:
        column = time_column(table)
        low, high = con.execute(
            f'SELECT min("{column}"), max("{column}") FROM telemetry."{table}"'
        ).fetchone()
        assert low is not None, table
        assert start.replace(tzinfo=None) <= low <= high < end.replace(tzinfo=None)


def test_every_table_has_rows_in_every_hour() -> None:
    """State tables such as DeviceInfo still report within every hour bucket."""
    generator, con = _fresh()
    generator.fill(con, START, START + timedelta(hours=3))

    for table in TIMED_TABLES:
        column = time_column(table)
        hours = con.execute(
            f"SELECT count(DISTINCT date_trunc('hour', \"{column}\")) "
            f'FROM telemetry."{table}"'
        ).fetchone()
        assert hours == (3,), table


@pytest.fixture(scope="module")
def six_hours() -> duckdb.DuckDBPyConnection:
    generator, con = _fresh()
    generator.fill(con, START, START + timedelta(hours=6))
    for table in TABLES:
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM telemetry."{table}"')

    return con


@pytest.mark.parametrize("story", STORIES, ids=[story.name for story in STORIES])
def test_story_occurs_in_every_one_hour_window(
    six_hours: duckdb.DuckDBPyConnection, story: Story
) -> None:
    """Each story's query finds rows in sliding one-hour windows over six hours."""
    con = six_hours

    for step in range(0, 5 * 60 + 1, 25):
        low = START + timedelta(minutes=step)
        high = low + timedelta(hours=1)
        first_table = story.query.split("\n", 1)[0].strip()
        column = time_column(first_table)
        assert column is not None
        query = story.query.replace(
            first_table,
            f"{first_table}\n| where {column} >= datetime({low:%Y-%m-%dT%H:%M:%SZ})"
            f" and {column} < datetime({high:%Y-%m-%dT%H:%M:%SZ})",
            1,
        )
        assert duckdb_kql.kql(con.cursor(), query).fetchall(), (story, low)


def test_background_alone_does_not_trigger_stories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without planted rows no story query matches, so hunts find the plants."""
    monkeypatch.setattr("runner.sandbox.telemetry.generator.STORIES", [])
    generator, con = _fresh()
    generator.fill(con, START, START + timedelta(hours=2))
    for table in TABLES:
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM telemetry."{table}"')

    found = [
        story.name
        for story in STORIES
        if duckdb_kql.kql(con.cursor(), story.query).fetchall()
    ]

    assert found == []


def test_time_column_prefers_timestamp_and_is_none_for_reference_tables() -> None:
    """Event tables are placed by Timestamp; the TVM catalogue has no time column."""
    assert time_column("DeviceProcessEvents") == "Timestamp"
    assert time_column("EmailEvents") == "Timestamp"
    assert time_column("DeviceTvmSoftwareVulnerabilities") == "TimeGenerated"
    assert time_column("DeviceTvmSoftwareVulnerabilitiesKB") is None


def test_every_table_with_timestamp_also_has_time_generated() -> None:
    """As in the unified portal, TimeGenerated sits beside every Timestamp."""
    for table, columns in TABLES.items():
        types = dict(columns)
        if "Timestamp" in types:
            assert types.get("TimeGenerated") == "datetime", table


def test_time_generated_equals_timestamp_in_every_row() -> None:
    """Background and planted rows carry one instant in both time columns."""
    generator, con = _fresh()
    generator.fill(con, START, START + timedelta(hours=1))

    for table, columns in TABLES.items():
        names = {name for name, _ in columns}
        if not {"Timestamp", "TimeGenerated"} <= names:
            continue
        total, differing = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE "
            '"TimeGenerated" IS DISTINCT FROM "Timestamp") '
            f'FROM telemetry."{table}"'
        ).fetchone()
        assert total > 0, table
        assert differing == 0, table


def test_vulnerability_catalogue_is_loaded_once_and_covers_the_inventory() -> None:
    """The KB rows arrive with the tables, once, and explain every inventory CVE."""
    generator, con = _fresh()
    generator.create_tables(con)
    generator.fill(con, START, START + timedelta(hours=1))

    catalogue = dict(
        con.execute(
            "SELECT CveId, VulnerabilitySeverityLevel "
            "FROM telemetry.DeviceTvmSoftwareVulnerabilitiesKB"
        ).fetchall()
    )
    inventory = con.execute(
        "SELECT DISTINCT CveId, VulnerabilitySeverityLevel "
        "FROM telemetry.DeviceTvmSoftwareVulnerabilities"
    ).fetchall()
    software = con.execute(
        "SELECT json_array_length(AffectedSoftware) "
        "FROM telemetry.DeviceTvmSoftwareVulnerabilitiesKB"
    ).fetchall()

    assert len(catalogue) == len(REFERENCE_ROWS["DeviceTvmSoftwareVulnerabilitiesKB"])
    assert inventory
    assert all(catalogue[cve] == level for cve, level in inventory)
    assert all(length >= 1 for (length,) in software)


def test_engine_serves_the_catalogue_whatever_the_window() -> None:
    """A table without a time column is not emptied by the query window."""
    settings = SandboxSettings(days=0.05, events_per_hour=100, devices=6, users=8)
    engine = Engine(settings, SandboxClock(START))
    engine.load()
    try:
        narrow = engine.run(
            "DeviceTvmSoftwareVulnerabilitiesKB | count",
            START - timedelta(minutes=1),
            START,
        )
        emails = engine.run(
            "EmailEvents | where TimeGenerated >= ago(1h) | count",
            START - timedelta(hours=1),
            START,
        )
    finally:
        engine.close()

    assert narrow.rows == [[len(REFERENCE_ROWS["DeviceTvmSoftwareVulnerabilitiesKB"])]]
    assert emails.rows[0][0] > 0


def test_fill_leaves_no_scratch_tables() -> None:
    """After a fill only the telemetry tables exist; no scratch table lingers."""
    generator, con = _fresh()
    generator.fill(con, START, START + timedelta(minutes=30))

    temporary = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary"
    ).fetchall()

    assert temporary == []


# Corpus hunts that duckdb-kql can run and that the telemetry is rich enough
# to answer; they use ago(), so the data is generated up to the real now.
CORPUS_HUNTS_WITH_FINDINGS = [
    "Credential Access/LSASSCredDumpProcdump.yaml",
    "Discovery/User&GroupEnumWithNetCommand.yaml",
    "Email Queries/Phish/Threat classification - BEC LLM detections - daily trend.yaml",
    "Email Queries/QR code/Inbound emails with QR code URLs.yaml",
    "Email Queries/URL Click/User clicks on phishing URLs in emails.yaml",
    "Execution/OfficeAppsLaunchingWscript.yaml",
    "Execution/PowerShellDownloads.yaml",
    "Execution/SuspiciousAppExeutedByWebserver.yaml",
    "Execution/SuspiciousMshtaUsage.yaml",
    "Exploits/Print Spooler RCE/SpoolsvSpawningRundll32.yaml",
    "Exploits/Print Spooler RCE/SuspiciousDLLInSpoolFolder.yaml",
    "Exploits/Print Spooler RCE/SuspiciousSpoolsvChildProcess.yaml",
    "Exploits/PrintNightmareUsageDetection-CVE-2021-1675.yaml",
    "Lateral Movement/RemoteFileCreationWithPsExec.yaml",
    "Persistence/RareProcessAsService.yaml",
    "Persistence/ScheduledTaskCreation.yaml",
    "Privilege Escalation/SAMNameChange_CVE-2021-42278.yaml",
    "Ransomware/DEV-0270/DisableSecurityServiceViaRegistry.yaml",
    "Ransomware/DEV-0270/MDEExclusionUsingPowerShell.yaml",
    "Ransomware/LogDeletionUsingWevtutil.yaml",
    "Ransomware/PotentialCobaltStrikeRansomwareActivity.yaml",
    "TVM/Detect_CISA_Alert_AA22-117A2021_Top_Routinely_Exploited_Vulnerabilities.yaml",
]


@pytest.fixture(scope="module")
def recent_hours() -> duckdb.DuckDBPyConnection:
    generator, con = _fresh()
    now = datetime.now(UTC)
    generator.fill(con, now - timedelta(hours=3), now)
    for table in TABLES:
        con.execute(f'CREATE VIEW "{table}" AS SELECT * FROM telemetry."{table}"')

    return con


@needs_corpus
@pytest.mark.parametrize("relative", CORPUS_HUNTS_WITH_FINDINGS)
def test_corpus_hunt_finds_rows(
    recent_hours: duckdb.DuckDBPyConnection, relative: str
) -> None:
    """A published Defender hunting query finds rows in three hours of data."""
    path = CORPUS / "sentinel-xdr-hunting" / relative
    query = yaml.safe_load(path.read_text(encoding="utf-8-sig"))["query"]

    assert duckdb_kql.kql(recent_hours.cursor(), query).fetchall()
