"""The outbox: enqueue in the caller's transaction, drain per sink, fingerprints."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing

from runner import outbox
from runner.outbox import Outbox
from runner.records import Record, event_id


def _record(number: int, severity: str = "high") -> Record:
    row = {"DeviceName": f"host-{number}", "Count": number}
    end = datetime(2026, 12, 3, 12, tzinfo=UTC)

    return Record(
        event_id=event_id("hunt-a", "contoso", row),
        hunt_id="hunt-a",
        hunt_name="Hunt A",
        severity=severity,
        tenant="contoso",
        window_start=end - timedelta(hours=1),
        window_end=end,
        run_id="run-1",
        row=row,
        tags=("t1",),
    )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    outbox.create_schema(conn)

    return conn


def test_enqueue_does_not_commit(tmp_path: Path) -> None:
    """Rows enqueued in a transaction that is rolled back never reach the outbox."""
    conn = _connect(tmp_path / "state.db")
    conn.execute("BEGIN")
    assert outbox.enqueue(conn, [_record(1), _record(2)], ["file"]) == 2
    conn.execute("ROLLBACK")

    assert outbox.pending(conn) == 0


def test_create_schema_is_idempotent(tmp_path: Path) -> None:
    """Creating the schema twice keeps the rows already queued."""
    conn = _connect(tmp_path / "state.db")
    outbox.enqueue(conn, [_record(1)], ["file"])
    outbox.create_schema(conn)

    assert outbox.pending(conn, "file") == 1


def test_duplicates_are_queued_once_per_sink(tmp_path: Path) -> None:
    """A row fetched again by an overlapping run is not queued again for a sink."""
    conn = _connect(tmp_path / "state.db")
    first = outbox.enqueue(conn, [_record(1), _record(2)], ["file", "webhook"])
    again = outbox.enqueue(conn, [_record(2), _record(3)], ["file", "webhook"])

    assert (first, again) == (4, 2)
    assert outbox.pending(conn, "file") == 3
    assert outbox.pending(conn, "webhook") == 3


def test_duplicate_after_delivery_is_skipped(tmp_path: Path) -> None:
    """The fingerprint outlives the acknowledged row, so a repeat is still skipped."""
    path = tmp_path / "state.db"
    conn = _connect(path)
    outbox.enqueue(conn, [_record(1)], ["file"])
    box = Outbox(path)

    async def drain() -> None:
        batch = await box.next_batch("file", 10)
        await box.ack("file", [seq for seq, _ in batch])

    asyncio.run(drain())

    assert outbox.pending(conn) == 0
    assert outbox.enqueue(conn, [_record(1)], ["file"]) == 0


def test_expired_fingerprint_allows_requeue(tmp_path: Path) -> None:
    """After the retention a row is new again for the sink."""
    conn = _connect(tmp_path / "state.db")
    day = timedelta(days=1)
    outbox.enqueue(conn, [_record(1)], ["file"], retention=day, now=1_000_000.0)

    assert (
        outbox.enqueue(conn, [_record(1)], ["file"], retention=day, now=1_000_100.0)
        == 0
    )
    assert (
        outbox.enqueue(conn, [_record(1)], ["file"], retention=day, now=1_100_000.0)
        == 1
    )
    assert outbox.prune_fingerprints(conn, day, now=1_300_000.0) == 1


def test_routing_function_picks_sinks_per_record(tmp_path: Path) -> None:
    """A routing function sends each record only to the sinks it names."""
    conn = _connect(tmp_path / "state.db")

    def route(record: Record) -> list[str]:
        return ["pager"] if record.severity == "high" else ["file"]

    outbox.enqueue(conn, [_record(1, "high"), _record(2, "low")], route)

    assert outbox.pending(conn, "pager") == 1
    assert outbox.pending(conn, "file") == 1


async def test_next_batch_keeps_order_and_round_trips(tmp_path: Path) -> None:
    """Batches come out in enqueue order with records equal to those queued."""
    path = tmp_path / "state.db"
    conn = _connect(path)
    queued = [_record(n) for n in range(5)]
    outbox.enqueue(conn, queued, ["file"])
    box = Outbox(path)

    first = await box.next_batch("file", 3)
    await box.ack("file", [seq for seq, _ in first])
    second = await box.next_batch("file", 3)

    assert [record for _, record in first + second] == queued
    assert await box.pending("file") == 2


async def test_backpressure_waits_for_room(tmp_path: Path) -> None:
    """A full outbox blocks ``wait_for_room`` until an ack makes space."""
    path = tmp_path / "state.db"
    conn = _connect(path)
    outbox.enqueue(conn, [_record(n) for n in range(4)], ["file"])
    box = Outbox(path, capacity=4)
    await box.pending()
    assert box.is_full()

    waiter = asyncio.create_task(box.wait_for_room(poll=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    batch = await box.next_batch("file", 1)
    await box.ack("file", [seq for seq, _ in batch])
    await asyncio.wait_for(waiter, 1)

    assert not box.is_full()


@pytest.mark.parametrize("sink", [None, "file"])
def test_pending_counts(tmp_path: Path, sink: str | None) -> None:
    """``pending`` counts one sink's rows or every sink's."""
    conn = _connect(tmp_path / "state.db")
    outbox.enqueue(conn, [_record(1)], ["file", "webhook"])

    assert outbox.pending(conn, sink) == (2 if sink is None else 1)


async def test_a_wait_for_room_is_logged_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path,
) -> None:
    """A full outbox logs one warning with the backlog per sink, then one info."""
    path = tmp_path / "state.db"
    conn = _connect(path)
    outbox.enqueue(conn, [_record(n) for n in range(3)], ["file"])
    outbox.enqueue(conn, [_record(9)], ["webhook"])
    box = Outbox(path, capacity=4)

    with structlog.testing.capture_logs() as logs:
        waiter = asyncio.create_task(
            box.wait_for_room(poll=0.02, hunt="hunt-a", tenant="contoso")
        )
        await asyncio.sleep(0.2)
        assert not waiter.done()
        batch = await box.next_batch("file", 1)
        await box.ack("file", [seq for seq, _ in batch])
        await asyncio.wait_for(waiter, 1)
        await box.wait_for_room(hunt="hunt-a", tenant="contoso")

    waited = logs[1].pop("waited_s")
    assert logs == [
        {
            "event": "outbox.full",
            "log_level": "warning",
            "hunt": "hunt-a",
            "tenant": "contoso",
            "pending": 4,
            "capacity": 4,
            "backlog": {"file": 3, "webhook": 1},
        },
        {
            "event": "outbox.room",
            "log_level": "info",
            "hunt": "hunt-a",
            "tenant": "contoso",
            "pending": 3,
            "capacity": 4,
        },
    ]
    assert waited > 0
