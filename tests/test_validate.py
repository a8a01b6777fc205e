"""Offline validation: configuration, hunt fields, references and KQL syntax."""

from __future__ import annotations

from pathlib import Path

import duckdb_kql
import pytest
from shared_corpus import CORPUS, needs_corpus

from runner.errors import Problem
from runner.validate import validate_paths

SHIPPED = Path(__file__).parents[1] / "config"
SANDBOX_CONFIG = (
    "tenants:\n  sandbox: {cloud: sandbox}\nsinks:\n  files: {type: file, path: out}\n"
)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_kql_syntax_error_is_reported_at_its_file_line(tmp_path: Path) -> None:
    """A syntax error on the third query line of a block scalar points at that line."""
    path = write(
        tmp_path,
        "h.yaml",
        "id: broken-kql\n"
        "query: |\n"
        "  DeviceProcessEvents\n"
        "  | where FileName == 'cmd.exe'\n"
        "  | where and\n"
        "severity: low\n",
    )
    problems = validate_paths([path], None)
    assert len(problems) == 1
    assert (problems[0].path, problems[0].line) == (str(path), 5)
    assert problems[0].message.startswith(
        "query: KQL syntax error (query line 3, column 1): "
    )


def test_a_one_line_query_is_reported_at_the_query_key(tmp_path: Path) -> None:
    """A plain one-line query's error points at the query line."""
    path = write(tmp_path, "h.yaml", "id: one-line\nname: x\nquery: T | take\n")
    [problem] = validate_paths([path], None)
    assert problem.line == 3
    assert "query line 1" in problem.message


def test_hunt_start_and_end_are_known_names(tmp_path: Path) -> None:
    """Queries using HuntStart/HuntEnd validate cleanly, as the daemon defines them."""
    path = write(
        tmp_path,
        "h.yaml",
        "query: |\n"
        "  DeviceEvents\n"
        "  | where Timestamp between (HuntStart .. HuntEnd)\n"
        "  | project Timestamp, DeviceId\n",
    )
    assert validate_paths([path], None) == []


def test_constructs_the_local_engine_lacks_are_not_problems(tmp_path: Path) -> None:
    """Valid KQL that duckdb-kql cannot translate passes, the service may run it."""
    query = "DeviceEvents | evaluate bag_unpack(AdditionalFields)"
    with pytest.raises(duckdb_kql.KqlUnsupportedError):
        duckdb_kql.to_sql(query)
    path = write(tmp_path, "h.yaml", f"query: {query}\n")
    assert validate_paths([path], None) == []


def test_field_and_yaml_problems_come_with_kql_problems(tmp_path: Path) -> None:
    """YAML, field and KQL problems of different files are all reported."""
    write(tmp_path, "a.yaml", "query: T\nenabled: on\n")
    write(tmp_path, "b.yaml", "query: |\n  T\n\t| take 1\n")
    write(tmp_path, "c.yaml", "query: T | where\n")
    write(tmp_path, "d.yaml", "query: T | take 1\n")
    problems = validate_paths([tmp_path], None)
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("a.yaml", 2),
        ("b.yaml", 3),
        ("c.yaml", 1),
    ]


def test_references_to_tenants_and_sinks_are_checked(tmp_path: Path) -> None:
    """A hunt naming an unconfigured tenant or sink is a problem listing the known."""
    config = tmp_path / "config"
    write(config, "c.yaml", SANDBOX_CONFIG)
    hunt = write(
        tmp_path / "jobs",
        "h.yaml",
        "query: T\ntenants: [sandbox, contoso]\nsinks: [file]\nlookback: 31d\n",
    )
    assert validate_paths([hunt], config) == [
        Problem(
            str(hunt),
            2,
            "tenants: no tenant named 'contoso'; configured tenants are sandbox",
        ),
        Problem(
            str(hunt), 3, "sinks: no sink named 'file'; configured sinks are files"
        ),
        Problem(
            str(hunt),
            4,
            "lookback: 31 days, 0:00:00 plus delay reaches past the 30-day data window",
        ),
    ]


def test_configuration_and_sink_option_problems_are_included(tmp_path: Path) -> None:
    """Problems in the configuration, sinks' own options included, are reported."""
    config = tmp_path / "config"
    write(
        config,
        "c.yaml",
        "tenants:\n"
        "  sandbox: {cloud: sandbox}\n"
        "sinks:\n"
        "  files: {type: file, path: out, format: xml}\n"
        "  odd: {type: carrier-pigeon}\n"
        "logging: {level: loud}\n",
    )
    hunt = write(tmp_path / "jobs", "h.yaml", "query: T\n")
    problems = validate_paths([hunt], config)
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("c.yaml", 6),
        ("c.yaml", 4),
        ("c.yaml", 5),
    ]
    assert "xml" in problems[1].message
    assert "carrier-pigeon" in problems[2].message


def test_the_shipped_configuration_validates() -> None:
    """config/ as shipped has no problem."""
    assert validate_paths([], SHIPPED) == []


@needs_corpus
def test_the_sentinel_corpus_gives_three_known_problems() -> None:
    """Of 90 corpus files, two have broken YAML and one two queries without ';'."""
    problems = validate_paths(
        [CORPUS / "sentinel-xdr-hunting", CORPUS / "sentinel-xdr-analytic-rules"],
        SHIPPED,
    )
    assert [(Path(p.path).name, p.line) for p in problems] == [
        ("MDO_URLClickedinEmail.YAML", 8),
        ("Spam Detection IP and Geo Position.yaml", 20),
        ("MDO_SummaryOfSenders.YAML", 23),
    ]
    assert problems[2].message == (
        "query: KQL syntax error (query line 8, column 1): extraneous input "
        "'EmailEvents' expecting {<EOF>, ';'}"
    )


def test_unknown_references_are_reported_at_their_own_line(tmp_path: Path) -> None:
    """An unknown tenant or sink is reported at the line of the list item naming it."""
    config = tmp_path / "config"
    write(config, "c.yaml", SANDBOX_CONFIG)
    hunt = write(
        tmp_path / "jobs",
        "h.yaml",
        "query: |\n  T\ntenants:\n  - sandbox\n  - contoso\nsinks:\n  - nope\n",
    )
    problems = validate_paths([hunt], config)
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (5, "tenants: no tenant named 'contoso'"),
        (7, "sinks: no sink named 'nope'"),
    ]
