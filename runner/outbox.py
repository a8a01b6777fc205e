"""The outbox: rows waiting for their sinks, kept in the state database.

A run's records enter the outbox (``enqueue``) inside the transaction that
advances the hunt's watermark, so a crash keeps both or neither. Each sink's
delivery worker then reads its rows in order (``Outbox.next_batch``) and
removes them only after the sink took them (``Outbox.ack``); a kill at any
moment therefore loses nothing and repeats at most the batch in flight.

Fingerprints ``(sink, event_id, first_seen)`` outlive delivery for the
retention period, so a row fetched again by an overlapping window or a retried
run is not sent to the same sink twice.

Durability: the database runs in WAL mode. The enqueueing connection (the
state's) uses ``synchronous=FULL`` so a committed run survives power loss; the
outbox's own connection only deletes acknowledged rows and uses
``synchronous=NORMAL``: a power cut may undo the last acks, which re-sends
those rows once (same event ids), and never drops one. A kill -9 loses no
committed transaction in either mode.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog

from runner import statefile
from runner.errors import StateError
from runner.records import Record

log = structlog.get_logger(__name__)

DEFAULT_RETENTION = timedelta(days=31)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    record TEXT NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox (sink, seq);
CREATE TABLE IF NOT EXISTS outbox_fingerprints (
    sink TEXT NOT NULL,
    event_id TEXT NOT NULL,
    first_seen REAL NOT NULL,
    PRIMARY KEY (sink, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_fingerprints_by_age
    ON outbox_fingerprints (first_seen);
"""

Routing = Sequence[str] | Callable[[Record], Sequence[str]]


@dataclass(frozen=True)
class UndecodableRow:
    """An outbox row whose stored record cannot be read back, and why."""

    event_id: str
    stored: str
    reason: str


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the outbox tables if they are missing; safe to call every start."""
    conn.executescript(_SCHEMA)


def enqueue(
    conn: sqlite3.Connection,
    records: Sequence[Record],
    sinks: Routing,
    *,
    retention: timedelta = DEFAULT_RETENTION,
    now: float | None = None,
) -> int:
    """Queue each record once for each of its sinks; returns the rows queued.

    *sinks* is either the sink names every record goes to or a function giving
    a record's sinks (the dispatcher's ``route``). A (sink, event id) pair seen
    within *retention* is skipped. Does not commit: the caller owns the
    transaction that also advances the watermark.
    """
    now = time.time() if now is None else now
    cutoff = now - retention.total_seconds()
    queued = 0
    for record in records:
        targets = sinks(record) if callable(sinks) else sinks
        if not targets:
            continue
        text = record.to_json()
        for sink in targets:
            # The upsert changes a row only when the pair is new or its
            # fingerprint has expired; rowcount says which happened.
            cursor = conn.execute(
                "INSERT INTO outbox_fingerprints (sink, event_id, first_seen) "
                "VALUES (?, ?, ?) ON CONFLICT (sink, event_id) DO UPDATE SET "
                "first_seen = excluded.first_seen WHERE first_seen < ?",
                (sink, record.event_id, now, cutoff),
            )
            if cursor.rowcount != 1:
                continue
            conn.execute(
                "INSERT INTO outbox (sink, event_id, record, enqueued_at) "
                "VALUES (?, ?, ?, ?)",
                (sink, record.event_id, text, now),
            )
            queued += 1

    return queued


def pending(
    conn: sqlite3.Connection,
    sink: str | None = None,
    *,
    among: Sequence[str] | None = None,
) -> int:
    """Rows waiting in the outbox, for one sink, for the sinks *among*, or all."""
    if sink is None and among is not None:
        marks = ",".join("?" * len(among))
        row = conn.execute(
            f"SELECT count(*) FROM outbox WHERE sink IN ({marks})", tuple(among)
        ).fetchone()
    elif sink is None:
        row = conn.execute("SELECT count(*) FROM outbox").fetchone()
    else:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE sink = ?", (sink,)
        ).fetchone()

    return int(row[0])


def backlog(
    conn: sqlite3.Connection, among: Sequence[str] | None = None
) -> dict[str, int]:
    """Rows waiting per sink (of the sinks *among*, if given), largest first."""
    counts = conn.execute(
        "SELECT sink, count(*) FROM outbox GROUP BY sink ORDER BY count(*) DESC"
    ).fetchall()

    return {sink: count for sink, count in counts if among is None or sink in among}


def prune_fingerprints(
    conn: sqlite3.Connection, retention: timedelta, *, now: float | None = None
) -> int:
    """Forget fingerprints older than *retention*; returns how many went."""
    now = time.time() if now is None else now
    cursor = conn.execute(
        "DELETE FROM outbox_fingerprints WHERE first_seen < ?",
        (now - retention.total_seconds(),),
    )

    return cursor.rowcount


def _decode(event_id: str, stored: bytes) -> Record | UndecodableRow:
    try:
        return Record.from_dict(json.loads(stored.decode("utf-8")))
    except Exception as error:
        # Whatever a damaged row makes the decoder raise, it is that row's
        # fault alone; the rows around it are still delivered.
        text = stored.decode("utf-8", errors="replace")
        return UndecodableRow(event_id, text, f"cannot decode outbox row: {error!r}")


class Outbox:
    """The delivery side of the outbox, on its own connection to the state file.

    Blocking SQLite calls run in a worker thread; each is one short indexed
    statement, serialised by a lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        capacity: int = 1_000_000,
        fingerprint_retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.fingerprint_retention = fingerprint_retention
        self._clock = clock
        self._lock = threading.Lock()
        self._room = asyncio.Event()
        self._last_prune = 0.0
        self._counted_at = time.monotonic()
        # The sinks whose rows count towards the capacity; None: every row.
        self._counted_sinks: tuple[str, ...] | None = None
        try:
            self._conn = statefile.connect(self.path)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            create_schema(self._conn)
            self._pending = pending(self._conn)
        except sqlite3.Error as error:
            raise StateError(f"cannot open outbox {self.path}: {error}") from error
        except OSError as error:
            raise StateError(
                f"cannot open outbox {self.path}: {error.strerror or error}"
            ) from error

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def count_only(self, sinks: Sequence[str]) -> None:
        """Count only the rows of *sinks* towards the capacity.

        Rows left for a sink no longer configured are never delivered, so a
        backlog of them must not stop the hunts for good.
        """
        self._counted_sinks = tuple(sinks)
        self._pending = self._count()

    def _count(self) -> int:
        among = self._counted_sinks
        counted = self._run(lambda conn: pending(conn, among=among))
        assert isinstance(counted, int)

        return counted

    def _run(self, work: Callable[[sqlite3.Connection], object]) -> object:
        with self._lock:
            try:
                return work(self._conn)
            except sqlite3.Error as error:
                raise StateError(f"outbox {self.path}: {error}") from error

    async def next_batch(
        self, sink: str, limit: int
    ) -> list[tuple[int, Record | UndecodableRow]]:
        """The oldest *limit* rows waiting for *sink*, as (seq, record).

        A row whose record cannot be decoded comes as an ``UndecodableRow``
        in its place, so the caller can set it aside instead of reading it
        again forever.
        """

        def read(conn: sqlite3.Connection) -> list[tuple[int, str, bytes]]:
            # As bytes: text that is not UTF-8 would fail the whole fetch.
            return conn.execute(
                "SELECT seq, event_id, CAST(record AS BLOB) FROM outbox "
                "WHERE sink = ? ORDER BY seq LIMIT ?",
                (sink, limit),
            ).fetchall()

        rows = await asyncio.to_thread(self._run, read)
        assert isinstance(rows, list)

        return [(seq, _decode(event_id, stored)) for seq, event_id, stored in rows]

    async def ack(self, sink: str, seqs: Sequence[int]) -> None:
        """Remove delivered rows; their fingerprints stay for the retention."""
        if not seqs:
            return

        def delete(conn: sqlite3.Connection) -> int:
            # One transaction for the batch: one WAL commit instead of one per row.
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                cursor = conn.executemany(
                    "DELETE FROM outbox WHERE sink = ? AND seq = ?",
                    [(sink, seq) for seq in seqs],
                )
                deleted = cursor.rowcount
                now = self._clock()
                if now - self._last_prune > 3600:
                    self._last_prune = now
                    prune_fingerprints(conn, self.fingerprint_retention, now=now)

            return deleted

        deleted = await asyncio.to_thread(self._run, delete)
        assert isinstance(deleted, int)
        self._pending = max(0, self._pending - deleted)
        if not self.is_full():
            self._room.set()

    async def pending(self, sink: str | None = None) -> int:
        """Rows waiting, for one sink or all; refreshes the backpressure count.

        Without *sink*: the rows that count towards the capacity.
        """
        if sink is None:
            count = await asyncio.to_thread(self._count)
            self._pending = count
            return count
        count = await asyncio.to_thread(self._run, lambda conn: pending(conn, sink))
        assert isinstance(count, int)

        return count

    def added(self, count: int) -> None:
        """Note *count* rows enqueued elsewhere, so ``is_full`` sees them now."""
        self._pending += count

    def is_full(self) -> bool:
        """Whether the outbox holds its capacity; hunts should stop fetching.

        The count is refreshed from the database at most once a second (a
        count over a large outbox takes milliseconds) and by every ack.
        """
        now = time.monotonic()
        if now - self._counted_at > 1.0:
            self._counted_at = now
            self._pending = self._count()

        return self._pending >= self.capacity

    async def wait_for_room(self, poll: float = 0.5, **context: str) -> None:
        """Return once the outbox is below capacity (acks wake this early).

        A wait is logged twice: ``outbox.full`` when it starts, with the sinks
        holding the backlog, and ``outbox.room`` when it ends; *context* (the
        hunt and tenant waiting) is added to both.
        """
        await self.pending()
        if not self.is_full():
            return

        started = time.monotonic()
        among = self._counted_sinks
        waiting = await asyncio.to_thread(self._run, lambda c: backlog(c, among))
        log.warning(
            "outbox.full",
            **context,
            pending=self._pending,
            capacity=self.capacity,
            backlog=waiting,
        )
        while self.is_full():
            self._room.clear()
            try:
                async with asyncio.timeout(poll):
                    await self._room.wait()
            except TimeoutError:
                await self.pending()
        log.info(
            "outbox.room",
            **context,
            pending=self._pending,
            capacity=self.capacity,
            waited_s=round(time.monotonic() - started, 3),
        )
