"""The stdout sink writes JSONL, flushed per batch."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
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


STUCK_STDOUT_CHILD = """
import asyncio, sqlite3, sys
from pathlib import Path
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from conftest import make_record
from runner import logs, outbox
from runner.outbox import Outbox
from runner.sinks import Dispatcher
from runner.sinks.base import LocalSinkSpec
from runner.sinks.stdout import StdoutSink

async def main(state):
    logs.configure("info")  # to stderr, as the daemon does
    conn = sqlite3.connect(state, isolation_level=None)
    outbox.create_schema(conn)
    sink = StdoutSink("out")
    sink.timeout = 0.2
    dispatcher = Dispatcher(
        Outbox(state), [(LocalSinkSpec("out", "stdout"), sink)],
        dead_letter_dir=state.parent / "dead-letter",
    )
    rows = [make_record(n, row={"Blob": "x" * 100_000, "n": n}) for n in range(3)]
    dispatcher.enqueue(conn, rows)
    async with dispatcher:
        await dispatcher.drain(timeout=1)
    print("closed", file=sys.stderr)

asyncio.run(main(Path(sys.argv[1])))
"""


def test_process_exits_while_its_stdout_is_not_read(tmp_path: Path) -> None:
    """A stdout sink stuck on a pipe nobody reads does not keep the process alive."""
    here = Path(__file__).parent
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STUCK_STDOUT_CHILD,
            str(tmp_path / "state.db"),
            str(here),
            str(here.parents[1]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        pytest.fail("the process hung at exit on its blocked stdout write")
    finally:
        assert child.stdout is not None and child.stderr is not None
        stderr = child.stderr.read().decode()
        child.stdout.close()
        child.stderr.close()

    assert "closed" in stderr
