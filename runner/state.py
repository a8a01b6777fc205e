"""The state file: watermarks, run history, hunt costs and the outbox, in SQLite.

Everything the daemon must remember across restarts lives here, and nothing
else touches the database. A run's rows enter the outbox in the same
transaction that advances its watermark, so a crash at any moment either keeps
both or neither. No secret is ever written here: records hold rows as the
service sent them, and the tables below hold only names, times and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import outbox, statefile
from runner.errors import StateError
from runner.limiter.tenant import QuotaUsage
from runner.records import Record

# How often, and how far apart, a daemon tries to take the state file's lock
# before it says another one holds it.
LOCK_ATTEMPTS = 10
LOCK_RETRY_SECONDS = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    hunt TEXT NOT NULL,
    tenant TEXT NOT NULL,
    watermark TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (hunt, tenant)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    hunt TEXT NOT NULL,
    tenant TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    status TEXT NOT NULL,
    rows INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    cpu_seconds REAL NOT NULL,
    duration_s REAL NOT NULL,
    error TEXT,
    finished_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_hunt ON runs (hunt, tenant, finished_at);
CREATE TABLE IF NOT EXISTS costs (
    hunt TEXT NOT NULL,
    tenant TEXT NOT NULL,
    average REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (hunt, tenant)
);
CREATE TABLE IF NOT EXISTS tenant_status (
    tenant TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quota_calls (
    tenant TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_calls_by_tenant ON quota_calls (tenant, at);
CREATE TABLE IF NOT EXISTS quota_charges (
    tenant TEXT NOT NULL,
    at REAL NOT NULL,
    cpu_seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_charges_by_tenant ON quota_charges (tenant, at);
CREATE TABLE IF NOT EXISTS quota_pauses (
    tenant TEXT PRIMARY KEY,
    until REAL NOT NULL
);
"""


@dataclass(frozen=True)
class RunRecord:
    """The outcome of one run of one hunt in one tenant, as the state keeps it."""

    run_id: str
    hunt: str
    tenant: str
    window_start: datetime
    window_end: datetime
    status: str
    rows: int
    calls: int
    cpu_seconds: float
    duration_s: float
    error: str | None = None


@contextlib.contextmanager
def exclusive(path: Path | str) -> Iterator[None]:
    """Hold the state file at *path* for this process until the block ends.

    Two daemons on one state file would both run every hunt (twice the quota),
    move the same watermarks back and forth and deliver the same outbox rows.
    The second one gets ``StateError`` naming the first one's pid instead. The
    lock is ``flock`` on ``<state>.lock``, released by the kernel if the
    process dies.
    """
    path = Path(path)
    lock_path = _lock_path(path)
    try:
        lock_path.parent.mkdir(
            mode=statefile.PRIVATE_FOLDER, parents=True, exist_ok=True
        )
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise StateError(
            f"cannot open state file {path}: {error.strerror or error}"
        ) from error
    try:
        if not _lock_exclusive(fd):
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise StateError(
                f"state file {path} is in use by another hunt-runner "
                f"(pid {holder or 'unknown'}); stop it first or give this one "
                "its own state.path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)


def _lock_path(path: Path) -> Path:
    """The lock beside the state file itself, wherever a link to it is named."""
    real = Path(os.path.realpath(path))

    return real.with_name(real.name + ".lock")


def _lock_exclusive(fd: int) -> bool:
    """Take the exclusive lock on *fd*, or say that another process holds it.

    ``in_use`` (a health check) holds a shared lock for a moment; a daemon
    starting in that moment tries again a few times instead of giving up on a
    state file nobody runs on. The waits are short and happen only at start.
    """
    for attempt in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt + 1 < LOCK_ATTEMPTS:
                time.sleep(LOCK_RETRY_SECONDS)
            continue
        return True

    return False


def in_use(path: Path | str) -> bool:
    """Whether a live hunt-runner holds the state file at *path* (see ``exclusive``)."""
    lock_path = _lock_path(Path(path))
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)

    return False


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class State:
    """The daemon's SQLite state file; every method is safe to call from any thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._conn = statefile.connect(self.path)
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            outbox.create_schema(self._conn)
        except sqlite3.Error as error:
            raise StateError(f"cannot open state file {self.path}: {error}") from error
        except OSError as error:
            # The folder cannot be made: a file in its place, a read-only disk.
            raise StateError(
                f"cannot open state file {self.path}: {error.strerror or error}"
            ) from error
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _read(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as error:
                raise StateError(f"state file {self.path}: {error}") from error

    def _write(self, sql: str, *args: Any) -> None:
        with self._lock:
            try:
                self._conn.execute(sql, args)
            except sqlite3.Error as error:
                raise StateError(f"state file {self.path}: {error}") from error

    # Watermarks -------------------------------------------------------------

    def watermark(self, hunt: str, tenant: str) -> datetime | None:
        """The end of the last window whose rows the outbox holds, or None."""
        rows = self._read(
            "SELECT watermark FROM watermarks WHERE hunt = ? AND tenant = ?",
            hunt,
            tenant,
        )

        return datetime.fromisoformat(rows[0][0]) if rows else None

    def watermarks(self) -> dict[tuple[str, str], datetime]:
        rows = self._read("SELECT hunt, tenant, watermark FROM watermarks")

        return {
            (hunt, tenant): datetime.fromisoformat(mark) for hunt, tenant, mark in rows
        }

    def commit_run(
        self, run: RunRecord, records: Sequence[Record], sinks: Sequence[str]
    ) -> int:
        """Store the run's rows in the outbox and advance the watermark, atomically.

        Returns how many (record, sink) deliveries were enqueued; rows already
        sent to a sink by an earlier, overlapping run are not enqueued again.
        """
        now = _iso(datetime.now(UTC))
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                enqueued = outbox.enqueue(self._conn, records, sinks)
                self._conn.execute(
                    "INSERT INTO watermarks (hunt, tenant, watermark, updated_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (hunt, tenant) DO UPDATE SET "
                    "watermark = excluded.watermark, updated_at = excluded.updated_at",
                    (run.hunt, run.tenant, _iso(run.window_end), now),
                )
                self._insert_run(run, now)
                self._conn.execute("COMMIT")
            except BaseException as error:
                # Whatever stopped the commit, the transaction must not stay
                # open: the next run's BEGIN would fail on it.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise StateError(f"state file {self.path}: {error}") from error
                raise

        return enqueued

    # Runs -------------------------------------------------------------------

    def record_failure(self, run: RunRecord) -> None:
        """Remember a failed run; the watermark stays where it was."""
        now = _iso(datetime.now(UTC))
        with self._lock:
            try:
                self._insert_run(run, now)
            except sqlite3.Error as error:
                raise StateError(f"state file {self.path}: {error}") from error

    def _insert_run(self, run: RunRecord, now: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.hunt,
                run.tenant,
                _iso(run.window_start),
                _iso(run.window_end),
                run.status,
                run.rows,
                run.calls,
                run.cpu_seconds,
                run.duration_s,
                run.error,
                now,
            ),
        )

    def last_runs(self) -> list[dict[str, Any]]:
        """The latest run of every hunt and tenant, newest first."""
        rows = self._read(
            "SELECT hunt, tenant, status, window_start, window_end, rows, error, "
            "MAX(finished_at) FROM runs GROUP BY hunt, tenant ORDER BY 8 DESC"
        )
        names = (
            "hunt",
            "tenant",
            "status",
            "window_start",
            "window_end",
            "rows",
            "error",
            "finished_at",
        )

        return [dict(zip(names, row, strict=True)) for row in rows]

    # Costs ------------------------------------------------------------------

    def cost(self, hunt: str, tenant: str) -> float | None:
        """The moving average of the CPU seconds one run of the hunt costs."""
        rows = self._read(
            "SELECT average FROM costs WHERE hunt = ? AND tenant = ?", hunt, tenant
        )

        return float(rows[0][0]) if rows else None

    def record_cost(self, hunt: str, tenant: str, average: float) -> None:
        self._write(
            "INSERT INTO costs (hunt, tenant, average, samples) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (hunt, tenant) DO UPDATE SET average = excluded.average, "
            "samples = samples + 1",
            hunt,
            tenant,
            average,
        )

    # Tenant status (what `hunt-runner status` shows) -------------------------

    def put_tenant_status(self, tenant: str, snapshot: dict[str, Any]) -> None:
        self._write(
            "INSERT INTO tenant_status (tenant, snapshot, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET snapshot = excluded.snapshot, "
            "updated_at = excluded.updated_at",
            tenant,
            json.dumps(snapshot, default=str),
            _iso(datetime.now(UTC)),
        )

    def tenant_status(self) -> dict[str, dict[str, Any]]:
        rows = self._read("SELECT tenant, snapshot, updated_at FROM tenant_status")

        return {
            tenant: {**json.loads(snapshot), "updated_at": updated}
            for tenant, snapshot, updated in rows
        }

    # Quota spending (the limiter's journal) ---------------------------------
    #
    # One row per call, written just before the call is sent, and one per CPU
    # charge: small inserts, fast enough for the event loop. A restarted
    # daemon reads back what is still inside the windows.

    def called(self, tenant: str, at: float) -> None:
        self._write("INSERT INTO quota_calls VALUES (?, ?)", tenant, at)

    def charged(self, tenant: str, at: float, cpu_seconds: float) -> None:
        self._write(
            "INSERT INTO quota_charges VALUES (?, ?, ?)", tenant, at, cpu_seconds
        )

    def paused(self, tenant: str, until: float) -> None:
        self._write(
            "INSERT INTO quota_pauses VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE "
            "SET until = max(until, excluded.until)",
            tenant,
            until,
        )

    def quota_usage(self, tenant: str, since: float) -> QuotaUsage:
        """The calls, charges and pause of *tenant* recorded after *since*."""
        calls = self._read(
            "SELECT at FROM quota_calls WHERE tenant = ? AND at > ?", tenant, since
        )
        charges = self._read(
            "SELECT at, cpu_seconds FROM quota_charges WHERE tenant = ? AND at > ?",
            tenant,
            since,
        )
        pause = self._read("SELECT until FROM quota_pauses WHERE tenant = ?", tenant)

        return QuotaUsage(
            calls=[at for (at,) in calls],
            charges=[(at, cpu) for at, cpu in charges],
            paused_until=pause[0][0] if pause else None,
        )

    def forget_quota(self, tenant: str, before: float) -> None:
        """Drop what *tenant* spent before *before*: it has left every window."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for table in ("quota_calls", "quota_charges"):
                    self._conn.execute(
                        f"DELETE FROM {table} WHERE tenant = ? AND at <= ?",
                        (tenant, before),
                    )
                self._conn.execute(
                    "DELETE FROM quota_pauses WHERE tenant = ? AND until <= ?",
                    (tenant, before),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise StateError(f"state file {self.path}: {error}") from error

    async def acommit_run(
        self, run: RunRecord, records: Sequence[Record], sinks: Sequence[str]
    ) -> int:
        """``commit_run`` off the event loop (it fsyncs)."""
        return await asyncio.to_thread(self.commit_run, run, records, sinks)
