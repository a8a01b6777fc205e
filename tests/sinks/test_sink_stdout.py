"""The stdout sink writes JSONL, flushed per batch."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from runner.records import Record
from runner.sinks.stdout import StdoutSink


async def test_writes_one_json_line_per_record(
    records: Callable[..., list[Record]],
) -> None:
    """Every record becomes one JSON line, in order."""
    stream = io.BytesIO()
    async with StdoutSink("out", stream=stream) as sink:
        await sink.send(records(3))

    lines = stream.getvalue().decode().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        r.event_id for r in records(3)
    ]
