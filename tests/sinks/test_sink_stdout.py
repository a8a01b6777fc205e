"""The stdout sink writes JSONL, flushed per batch."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from conftest import make_record

from runner import outbox
from runner.outbox import Outbox
from runner.records import Record
from runner.sinks import Dispatcher, build_sink
from runner.sinks.base import LocalSinkSpec
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


async def test_blocked_pipe_does_not_starve_other_sinks(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A stdout pipe nobody reads keeps timing out without stopping a file sink."""
    reader, writer = os.pipe()
    stream = os.fdopen(writer, "wb")
    stuck = StdoutSink("stuck", stream=stream)
    stuck.timeout = 0.05
    files = build_sink(
        LocalSinkSpec("files", "file", options={"path": str(tmp_path / "out")})
    )
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    dispatcher = Dispatcher(
        Outbox(path),
        [
            (LocalSinkSpec("stuck", "stdout"), stuck),
            (LocalSinkSpec("files", "file"), files),
        ],
        dead_letter_dir=tmp_path / "dead-letter",
        backoff_base=0.001,
        backoff_cap=0.005,
    )
    # More than a pipe buffer, so the first write blocks for good.
    dispatcher.enqueue(
        conn, [make_record(n, row={"Blob": "x" * 100_000, "n": n}) for n in range(2)]
    )
    try:
        async with dispatcher:
            # Many more timed-out attempts than the default thread pool has threads.
            for _ in range(500):
                if dispatcher.stats()["stuck"]["retried"] >= 40:
                    break
                await asyncio.sleep(0.01)
            assert dispatcher.stats()["stuck"]["retried"] >= 40
            dispatcher.enqueue(conn, records(5, start=100))
            dispatcher.notify()
            # Counters only: a starved thread pool would hang any outbox query.
            for _ in range(300):
                if dispatcher.stats()["files"]["delivered"] == 7:
                    break
                await asyncio.sleep(0.01)
    finally:
        os.close(reader)
        conn.close()

    assert dispatcher.stats()["files"]["delivered"] == 7


async def test_back_to_back_sends_all_succeed(
    records: Callable[..., list[Record]],
) -> None:
    """A send right after the previous one returned never finds its thread busy."""
    stream = io.BytesIO()
    async with StdoutSink("out", stream=stream) as sink:
        for number in range(300):
            await sink.send(records(1, start=number))

    assert len(stream.getvalue().splitlines()) == 300
