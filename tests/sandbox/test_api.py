"""The three hunting endpoints over real HTTPS with real msal tokens."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from runner.sandbox import CallLimit, CpuLimit, QuotaSettings, Sandbox
from runner.sandbox.api import BadTimespan, parse_timespan

APPDATA_QUERY = (
    "DeviceProcessEvents | where InitiatingProcessFileName =~ 'powershell.exe' "
    "| where ProcessCommandLine contains 'appdata' "
    "| project Timestamp, FileName, InitiatingProcessFileName, DeviceId | limit 2"
)
SEVEN_DIGITS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


async def test_mde_appdata_query_returns_the_documented_shape(
    demo_app: Any, token: Any, call: Any
) -> None:
    """The issue's MDE query answers 200 with <= 2 rows of exactly four columns."""
    bearer = await token(demo_app, "mde")

    status, _, body = await call("mde", bearer, {"Query": APPDATA_QUERY})

    assert status == 200, body
    assert set(body) == {"Stats", "Schema", "Results"}
    assert body["Schema"] == [
        {"Name": "Timestamp", "Type": "DateTime"},
        {"Name": "FileName", "Type": "String"},
        {"Name": "InitiatingProcessFileName", "Type": "String"},
        {"Name": "DeviceId", "Type": "String"},
    ]
    assert 1 <= len(body["Results"]) <= 2
    for row in body["Results"]:
        assert list(row) == [
            "Timestamp",
            "FileName",
            "InitiatingProcessFileName",
            "DeviceId",
        ]
        assert SEVEN_DIGITS.match(row["Timestamp"]), row["Timestamp"]
    assert isinstance(body["Stats"]["ExecutionTime"], float)
    assert re.match(r"^\d\d:\d\d:\d\d", body["Stats"]["resource_usage"]["cpu"]["user"])


async def test_xdr_returns_legacy_shape(demo_app: Any, token: Any, call: Any) -> None:
    """The XDR endpoint answers with Stats, Schema and Results."""
    bearer = await token(demo_app, "xdr")

    status, _, body = await call(
        "xdr", bearer, {"Query": "DeviceInfo | summarize n = count()"}
    )

    assert status == 200, body
    assert body["Schema"] == [{"Name": "n", "Type": "Int64"}]
    assert body["Results"][0]["n"] > 0
    assert "dataset_statistics" in body["Stats"]


async def test_graph_returns_lower_case_shape(
    demo_app: Any, token: Any, call: Any
) -> None:
    """Graph answers with lower-case schema and results and no statistics."""
    bearer = await token(demo_app, "graph")

    status, _, body = await call("graph", bearer, {"Query": APPDATA_QUERY})

    assert status == 200, body
    assert "Stats" not in body and "stats" not in body
    assert body["schema"][0] == {"name": "Timestamp", "type": "DateTime"}
    assert len(body["results"]) <= 2


async def test_graph_timespan_excluding_all_data_returns_nothing(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A Timespan in the year 2000 restricts every table to no rows."""
    bearer = await token(demo_app, "graph")
    body = {
        "Query": "DeviceProcessEvents | count",
        "Timespan": "2000-01-01T00:00:00Z/2000-01-02T00:00:00Z",
    }

    status, _, answer = await call("graph", bearer, body)

    assert status == 200, answer
    assert answer["results"] == [{"Count": 0}]


@pytest.mark.parametrize(
    ("form", "hours"),
    [
        ("{start}/{end}", 2.0),
        ("PT2H/{end}", 2.0),
        ("{start}/PT2H", 2.0),
        ("PT2H", 2.0),
        ("{start}", 2.0),
    ],
)
async def test_graph_timespan_forms_restrict_rows(
    sandbox: Sandbox, demo_app: Any, token: Any, call: Any, form: str, hours: float
) -> None:
    """Each of the five Timespan forms keeps only rows inside its window."""
    bearer = await token(demo_app, "graph")
    end = sandbox.clock.now().replace(microsecond=0)
    start = end - timedelta(hours=hours)
    timespan = form.format(
        start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    query = (
        "DeviceProcessEvents | summarize earliest = min(Timestamp), "
        "latest = max(Timestamp), n = count()"
    )

    status, _, body = await call(
        "graph", bearer, {"Query": query, "Timespan": timespan}
    )

    assert status == 200, body
    row = body["results"][0]
    assert row["n"] > 0
    first = datetime.fromisoformat(row["earliest"][:26] + "+00:00")
    last = datetime.fromisoformat(row["latest"][:26] + "+00:00")
    assert first >= start
    assert last <= end + timedelta(seconds=5)


def test_parse_timespan_forms() -> None:
    """The parser reads all five forms and rejects text in none of them."""
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

    assert parse_timespan("2026-12-03T10:00:00Z/2026-12-03T12:00:00Z", now) == (
        start,
        now,
    )
    assert parse_timespan("PT2H/2026-12-03T12:00:00Z", now) == (start, now)
    assert parse_timespan("2026-12-03T10:00:00Z/PT2H", now) == (start, now)
    assert parse_timespan("PT2H", now) == (start, now)
    assert parse_timespan("2026-12-03T10:00:00", now) == (start, now)
    assert parse_timespan("P1D", now) == (now - timedelta(days=1), now)
    with pytest.raises(BadTimespan):
        parse_timespan("yesterday", now)


async def test_bad_timespan_is_400(demo_app: Any, token: Any, call: Any) -> None:
    """A Timespan in no ISO 8601 form is a 400 in Graph's error shape."""
    bearer = await token(demo_app, "graph")

    status, _, body = await call(
        "graph", bearer, {"Query": "DeviceInfo | take 1", "Timespan": "last week"}
    )

    assert status == 400
    assert body["error"]["code"] == "BadRequest"
    assert "request-id" in body["error"]["innerError"]


async def test_missing_query_is_400(demo_app: Any, token: Any, call: Any) -> None:
    """A legacy body with a wrongly cased key is 'Missing query.'."""
    bearer = await token(demo_app, "mde")

    status, _, body = await call("mde", bearer, {"query": "DeviceInfo | take 1"})

    assert status == 400
    assert body["error"]["code"] == "InvalidRequestBody"
    assert body["error"]["message"] == "Missing query."


async def test_missing_token_is_401(call: Any) -> None:
    """A call without a bearer token is refused in the legacy shape."""
    status, headers, body = await call("xdr", None, {"Query": "DeviceInfo"})

    assert status == 401
    assert body["error"]["code"] == "Unauthorized"
    assert "target" in body["error"]


async def test_token_for_another_api_is_401(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A Graph token sent to the MDE endpoint is refused for its audience."""
    bearer = await token(demo_app, "graph")

    status, _, body = await call("mde", bearer, {"Query": "DeviceInfo | take 1"})

    assert status == 401
    assert body["error"]["code"] == "Unauthorized"
    assert "audience" in body["error"]["message"]


async def test_expired_token_is_401_on_graph(
    demo_app: Any, token: Any, call: Any, clock_restored: Callable[[float], None]
) -> None:
    """A token past its expiry gets Graph's InvalidAuthenticationToken."""
    bearer = await token(demo_app, "graph")
    clock_restored(3601)

    status, _, body = await call("graph", bearer, {"Query": "DeviceInfo | take 1"})

    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert "expired" in body["error"]["message"]


async def test_malformed_token_is_401(call: Any) -> None:
    """A bearer that is not a sandbox JWT is refused."""
    status, _, body = await call("graph", "not.a.jwt", {"Query": "DeviceInfo"})

    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"


async def test_token_without_roles_is_403(
    make_app: Any, token: Any, call: Any, new_tenant: Any
) -> None:
    """An application without the API's role is refused with 403."""
    tenant_id, client_id, secret = new_tenant(withhold_roles=True)
    bearer = await token(make_app(client_id, secret, tenant_id), "xdr")

    status, _, body = await call("xdr", bearer, {"Query": "DeviceInfo | take 1"})

    assert status == 403
    assert body["error"]["message"].startswith("Missing application roles")


async def test_syntax_error_is_400_with_engine_message(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A query that does not parse is a 400 carrying the engine's message."""
    bearer = await token(demo_app, "xdr")

    status, _, body = await call("xdr", bearer, {"Query": "DeviceInfo | where"})

    assert status == 400
    assert body["error"]["code"] == "BadRequest"
    assert "could not parse KQL" in body["error"]["message"]


async def test_unknown_table_is_400_naming_it(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A query on a table the sandbox lacks is a 400 that names the table."""
    bearer = await token(demo_app, "graph")

    status, _, body = await call("graph", bearer, {"Query": "NoSuchTable | take 1"})

    assert status == 400
    assert "'NoSuchTable'" in body["error"]["message"]
    assert "Failed to resolve table or column expression" in body["error"]["message"]


async def test_unknown_column_is_400_naming_it(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A query on a missing column is a legacy SemanticError naming the column."""
    bearer = await token(demo_app, "mde")

    status, _, body = await call(
        "mde", bearer, {"Query": "DeviceInfo | where NoSuchColumn == 1"}
    )

    assert status == 400
    assert body["error"]["code"] == "SemanticError"
    assert "NoSuchColumn" in body["error"]["message"]


async def test_values_are_serialised_as_the_service_does(
    demo_app: Any, token: Any, call: Any
) -> None:
    """Dynamic values arrive as JSON, timespans and guids as .NET text."""
    bearer = await token(demo_app, "xdr")
    query = (
        "print d = dynamic({'a': [1, 2]}), t = 90s, g = toguid("
        "'0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f'), r = 1.5, b = true, "
        "w = datetime(2026-01-02 03:04:05.123456)"
    )

    status, _, body = await call("xdr", bearer, {"Query": query})

    assert status == 200, body
    types = {column["Name"]: column["Type"] for column in body["Schema"]}
    assert types == {
        "d": "Dynamic",
        "t": "TimeSpan",
        "g": "Guid",
        "r": "Double",
        "b": "Boolean",
        "w": "DateTime",
    }
    assert body["Results"] == [
        {
            "d": {"a": [1, 2]},
            "t": "00:01:30",
            "g": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "r": 1.5,
            "b": True,
            "w": "2026-01-02T03:04:05.1234560Z",
        }
    ]


async def test_results_are_cut_to_the_row_cap(
    demo_app: Any, token: Any, call: Any, quotas_restored: Any
) -> None:
    """A result over the row cap is cut to the cap, as the service does."""
    quotas_restored(QuotaSettings(calls=(CallLimit(1000, 60.0),), cpu=(), row_cap=7))
    bearer = await token(demo_app, "graph")

    status, _, body = await call("graph", bearer, {"Query": "DeviceProcessEvents"})

    assert status == 200, body
    assert len(body["results"]) == 7


async def test_result_over_the_size_cap_is_400(
    demo_app: Any, token: Any, call: Any, quotas_restored: Any
) -> None:
    """A result larger than the size cap is the documented 400."""
    quotas_restored(
        QuotaSettings(calls=(CallLimit(1000, 60.0),), cpu=(), result_size_bytes=2000)
    )
    bearer = await token(demo_app, "mde")

    status, _, body = await call("mde", bearer, {"Query": "DeviceProcessEvents"})

    assert status == 400
    assert body["error"]["message"].startswith(
        "Query execution has exceeded the allowed result size"
    )


async def test_46th_call_in_a_window_is_429_naming_it(
    sandbox: Sandbox,
    make_app: Any,
    token: Any,
    call: Any,
    new_tenant: Any,
    quotas_restored: Any,
    clock_restored: Callable[[float], None],
) -> None:
    """The 46th call in a minute is a 429 naming 45 per minute; later calls pass."""
    quotas_restored(QuotaSettings(calls=(CallLimit(45, 60.0),), cpu=()))
    tenant_id, client_id, secret = new_tenant()
    bearer = await token(make_app(client_id, secret, tenant_id), "mde")
    body = {"Query": "print x = 1"}

    statuses = [(await call("mde", bearer, body))[0] for _ in range(45)]
    status, headers, refused = await call("mde", bearer, body)
    clock_restored(60.5)
    after, _, _ = await call("mde", bearer, body)

    assert statuses == [200] * 45
    assert status == 429
    assert refused["error"] == {
        "code": "429",
        "message": "API calls quota exceeded! maximum allowed 45 per 00:01:00",
        "target": refused["error"]["target"],
    }
    assert 50 < float(headers["Retry-After"]) <= 60.0
    assert after == 200


async def test_cpu_budget_exhausted_is_429_until_the_cycle(
    sandbox: Sandbox,
    make_app: Any,
    token: Any,
    call: Any,
    new_tenant: Any,
    quotas_restored: Any,
    clock_restored: Callable[[float], None],
) -> None:
    """A spent CPU budget refuses calls with 'processing resources' and Retry-After."""
    quotas_restored(
        QuotaSettings(
            calls=(CallLimit(1000, 60.0),),
            cpu=(CpuLimit(0.000001, 30.0),),
            cpu_cycle_seconds=60.0,
        )
    )
    tenant_id, client_id, secret = new_tenant()
    bearer = await token(make_app(client_id, secret, tenant_id), "graph")

    first, _, _ = await call("graph", bearer, {"Query": "DeviceInfo | count"})
    status, headers, body = await call("graph", bearer, {"Query": "print 1"})
    retry_after = float(headers["Retry-After"])
    clock_restored(retry_after + 0.01)
    later, _, _ = await call("graph", bearer, {"Query": "print 1"})

    assert first == 200
    assert status == 429
    assert body["error"]["message"].startswith(
        "You have exceeded processing resources allocated to this tenant. "
        "You can run queries again in 00:0"
    )
    # The charge must leave the 30 s window, then the next 60 s cycle starts.
    assert 0 < retry_after <= 90.0
    assert later == 200


async def test_healthz(sandbox: Sandbox) -> None:
    """The health endpoint answers 200 with status ok."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{sandbox.base_url}/healthz", ssl=sandbox.client_ssl_context()
        ) as response,
    ):
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_graph_beta_path_and_non_ascii_query(
    sandbox: Sandbox, demo_app: Any, token: Any
) -> None:
    """The beta Graph path runs a UTF-8 query with non-ASCII text intact."""
    bearer = await token(demo_app, "graph")
    body = '{"Query": "print signer = \'Müller GmbH\'"}'.encode()

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sandbox.base_url}/beta/security/runHuntingQuery",
            data=body,
            headers={
                "Authorization": f"Bearer {bearer}",
                "Content-Type": "application/json; charset=utf-8",
            },
            ssl=sandbox.client_ssl_context(),
        ) as response,
    ):
        answer = await response.json()

    assert response.status == 200, answer
    assert answer["results"] == [{"signer": "Müller GmbH"}]


@pytest.mark.parametrize(
    "command",
    [
        ".set-or-replace Scratch <| print x = 1",
        ".create database scratch persist (@'{path}')",
    ],
)
async def test_write_commands_are_refused_and_change_nothing(
    demo_app: Any, token: Any, call: Any, tmp_path: Any, command: str
) -> None:
    """A hunting call cannot create tables or database files: it is a 400."""
    bearer = await token(demo_app, "graph")
    target = tmp_path / "scratch.duckdb"

    status, _, body = await call(
        "graph", bearer, {"Query": command.format(path=target)}
    )
    after, _, lookup = await call("graph", bearer, {"Query": "Scratch | take 1"})

    assert status == 400, body
    assert not target.exists()
    assert after == 400
    assert "'Scratch'" in lookup["error"]["message"]


async def test_non_finite_reals_are_valid_json(
    sandbox: Sandbox, demo_app: Any, token: Any
) -> None:
    """NaN and infinities arrive as the strings Kusto writes, never bare NaN tokens."""
    bearer = await token(demo_app, "xdr")
    query = (
        "print n = real(nan), p = real(+inf), m = real(-inf), d = pack_array(real(nan))"
    )

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            sandbox.base_url + "/api/advancedhunting/run",
            json={"Query": query},
            headers={"Authorization": f"Bearer {bearer}"},
            ssl=sandbox.client_ssl_context(),
        ) as response,
    ):
        text = await response.text()

    assert response.status == 200, text
    body = json.loads(text, parse_constant=_refuse_constant)
    assert body["Results"] == [
        {"n": "NaN", "p": "Infinity", "m": "-Infinity", "d": ["NaN"]}
    ]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def test_datetime_beyond_the_kusto_range_is_null(
    demo_app: Any, token: Any, call: Any
) -> None:
    """A datetime past year 9999 (or before year 1) is null, not a 500."""
    bearer = await token(demo_app, "graph")
    query = "print late = datetime(9999-12-31) + 1d, early = datetime(0001-01-01) - 1d"

    status, _, body = await call("graph", bearer, {"Query": query})

    assert status == 200, body
    assert body["results"] == [{"late": None, "early": None}]


async def test_size_cap_counts_the_column_names_sent_in_every_row(
    demo_app: Any, token: Any, call: Any, quotas_restored: Any
) -> None:
    """The size cap applies to the rows as sent, each an object naming its columns."""
    quotas_restored(
        QuotaSettings(calls=(CallLimit(1000, 60.0),), cpu=(), result_size_bytes=30_000)
    )
    bearer = await token(demo_app, "xdr")
    query = "range x from 1 to 1000 step 1 | extend a_rather_long_column_name = x"

    status, _, body = await call("xdr", bearer, {"Query": query})

    assert status == 400, f"{status}: {len(str(body))} characters of results"
    assert body["error"]["message"].startswith(
        "Query execution has exceeded the allowed result size"
    )
