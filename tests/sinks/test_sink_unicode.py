"""Rows with awkward text: lone UTF-16 surrogates, non-ASCII, deep nesting."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sink_receivers import SyslogReceiver, WebhookReceiver

from runner import outbox
from runner.outbox import Outbox
from runner.results import to_records
from runner.sinks import Dispatcher, build_sink
from runner.sinks.base import LocalSinkSpec

# What the service sends for a Windows command line holding half of a UTF-16
# surrogate pair: JSON allows the escape, and json.loads keeps it as it is.
SERVICE_BODY = (
    '{"ProcessCommandLine": "cmd /c echo \\ud83d é", "DeviceName": "h\\udc00st",'
    ' "AdditionalFields": {"a": [{"b": "\\ud800"}], "ü": "日本"}}'
)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(ssl_context=None)
    await server.start()
    yield server
    await server.stop()


async def test_lone_surrogates_reach_every_sink_intact(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    """A row with lone surrogate escapes gets an id, is queued and is delivered."""
    row = json.loads(SERVICE_BODY)
    end = datetime(2026, 12, 3, 12, tzinfo=UTC)
    records = to_records(
        [row],
        hunt_id="cmdline",
        hunt_name="Command lines",
        severity="high",
        tenant="contoso",
        window=(end - timedelta(hours=1), end),
        run_id="r1",
    )
    syslog = SyslogReceiver("udp")
    port = await syslog.start()
    specs = [
        LocalSinkSpec("jsonl", "file", options={"path": str(tmp_path / "jsonl")}),
        LocalSinkSpec(
            "csv", "file", options={"path": str(tmp_path / "csv"), "format": "csv"}
        ),
        LocalSinkSpec(
            "hec",
            "webhook",
            options={
                "url": webhook.url,
                "preset": "splunk-hec",
                "headers": {"Authorization": "Splunk test"},
            },
        ),
        LocalSinkSpec("cef", "syslog", options={"port": port, "encoding": "cef"}),
        LocalSinkSpec(
            "short", "syslog", options={"port": port, "max_message_bytes": 480}
        ),
    ]
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    dispatcher = Dispatcher(
        Outbox(path),
        [(spec, build_sink(spec)) for spec in specs],
        dead_letter_dir=tmp_path / "dead-letter",
    )
    conn.execute("BEGIN IMMEDIATE")
    assert dispatcher.enqueue(conn, records) == len(specs)
    conn.execute("COMMIT")
    try:
        async with dispatcher:
            assert await asyncio.wait_for(dispatcher.drain(timeout=5), 10)
            messages = await syslog.wait_for(2)
    finally:
        await syslog.stop()
        conn.close()

    line = (tmp_path / "jsonl" / "cmdline.jsonl").read_text(encoding="utf-8")
    assert json.loads(line)["row"] == row
    assert json.loads(line)["event_id"] == records[0].event_id
    text = (tmp_path / "csv" / "cmdline.csv").read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text)))
    assert table[0]["event_id"] == records[0].event_id
    assert webhook.requests[0].documents[0]["event"]["row"] == row
    assert len(messages) == 2
    assert all(stats["delivered"] == 1 for stats in dispatcher.stats().values())


def test_event_id_of_ordinary_text_is_unchanged() -> None:
    """Ids of rows without surrogates stay what earlier versions computed."""
    from runner.records import event_id

    row: dict[str, Any] = {"DeviceName": "hôte-日本", "Count": 3}

    assert event_id("h", "t", row) == "3829fe45bff35a6aa25f61e49b0bc16a"
