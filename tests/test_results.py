"""Response normalisation and query statistics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.records import Record
from runner.results import parse_response, parse_timespan, to_records


def test_timespan_strings_become_seconds() -> None:
    """.NET TimeSpan strings, with days and 7 fractional digits, parse to seconds."""
    assert parse_timespan("00:00:19.0625000") == pytest.approx(19.0625)
    assert parse_timespan("00:00:00") == 0.0
    assert parse_timespan("1.02:03:04.5") == pytest.approx(93784.5)
    with pytest.raises(ValueError):
        parse_timespan("19 seconds")


def test_graph_shape_is_normalised() -> None:
    """Graph's lower-case schema/results parse with no statistics."""
    result = parse_response(
        {
            "schema": [{"name": "Timestamp", "type": "DateTime"}],
            "results": [{"Timestamp": "2020-02-05T01:10:26.2648757Z"}],
        }
    )
    assert [c.name for c in result.columns] == ["Timestamp"]
    assert result.rows[0]["Timestamp"] == "2020-02-05T01:10:26.2648757Z"
    assert result.cpu_seconds is None


def test_legacy_shape_carries_cpu_from_stats() -> None:
    """The legacy Schema/Results shape yields the Stats CPU total and run time."""
    result = parse_response(
        {
            "Stats": {
                "ExecutionTime": 0.25,
                "resource_usage": {"cpu": {"total cpu": "00:00:01.5000000"}},
            },
            "Schema": [{"Name": "DeviceId", "Type": "String"}],
            "Results": [{"DeviceId": "a"}, {"DeviceId": "b"}],
        }
    )
    assert result.columns[0].type == "String"
    assert len(result.rows) == 2
    assert result.cpu_seconds == pytest.approx(1.5)
    assert result.execution_seconds == pytest.approx(0.25)


@pytest.mark.parametrize("usage", ["busy", {"cpu": "00:00:01"}, [1]])
def test_stats_of_an_unexpected_shape_give_no_cpu(usage: object) -> None:
    """Stats whose resource_usage is not the documented mapping mean unknown CPU."""
    result = parse_response({"Stats": {"resource_usage": usage}, "Results": []})

    assert result.cpu_seconds is None


def test_body_without_results_is_rejected() -> None:
    """A body with no results list is a ValueError, not an empty result."""
    with pytest.raises(ValueError):
        parse_response({"error": {"code": "x"}})


def test_records_have_stable_event_ids() -> None:
    """The same row from two runs gets the same event id; another row does not."""
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))
    common = dict(
        hunt_id="h", hunt_name="H", severity="high", tenant="t", window=window
    )
    first = to_records([{"a": 1}, {"a": 2}], run_id="r1", **common)
    second = to_records([{"a": 1}], run_id="r2", **common)
    assert first[0].event_id == second[0].event_id
    assert first[0].event_id != first[1].event_id
    assert Record.from_dict(first[0].to_dict()) == first[0]
