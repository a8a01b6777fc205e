"""The dispatcher: one delivery worker per sink, draining the outbox.

Everything that is the same for every sink lives here once: routing records
to sinks, batching, the timeout around a send, retries with backoff and
jitter, dead-lettering what no retry can deliver, counting and logging. A sink
that fails or hangs holds up only its own worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from runner import outbox as outbox_module
from runner.errors import SinkError, StateError
from runner.outbox import Outbox, UndecodableRow
from runner.records import Record, json_text
from runner.sinks.base import (
    BlockingCalls,
    RecordsRejected,
    SendResult,
    Sink,
    SinkSpecLike,
    SinkThrottled,
    accepts,
)

log = structlog.get_logger(__name__)

# The longest pause a receiver's Retry-After may impose on a sink: a value of
# days (or an infinite one) is a receiver's bug, and waiting it out would
# stall the sink with rows waiting.
RETRY_AFTER_CAP = 900.0


@dataclass
class SinkStats:
    """Counters of one sink since the dispatcher started."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    truncated: int = 0
    dead_lettered: int = 0


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng() * min(cap, base * 2 ** min(attempt, 30))


class Dispatcher:
    """Delivers the outbox to sinks; start it, ``notify`` it, ``aclose`` it."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[tuple[SinkSpecLike, Sink]],
        *,
        dead_letter_dir: Path,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        poll_interval: float = 1.0,
        retry_after_cap: float = RETRY_AFTER_CAP,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.outbox = outbox
        self._sinks = list(sinks)
        self.dead_letter_dir = Path(dead_letter_dir)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._poll_interval = poll_interval
        self._retry_after_cap = retry_after_cap
        self._sleep = sleep
        self._rng = rng
        self._stats = {spec.name: SinkStats() for spec, _ in self._sinks}
        outbox.count_only([spec.name for spec, _ in self._sinks])
        self._wake = {spec.name: asyncio.Event() for spec, _ in self._sinks}
        # Dead-letter files are written and fsynced off the event loop, on a
        # thread per sink, so a hung disk stops that sink and nothing else.
        self._dead_letter_calls = {
            spec.name: BlockingCalls(f"{spec.name}-dead-letter")
            for spec, _ in self._sinks
        }
        self._tasks: list[asyncio.Task[None]] = []

    # Routing ----------------------------------------------------------------

    def route(self, record: Record, among: Sequence[str] | None = None) -> list[str]:
        """Names of the sinks (of *among*, if given) whose filters pass *record*.

        A hunt's records share its id, severity and tags, so routing its first
        record routes the whole run.
        """
        return [
            spec.name
            for spec, _ in self._sinks
            if (among is None or spec.name in among) and accepts(spec, record)
        ]

    def enqueue(self, conn: sqlite3.Connection, records: Sequence[Record]) -> int:
        """Queue *records* for their sinks in the caller's open transaction."""
        queued = outbox_module.enqueue(
            conn,
            records,
            self.route,
            retention=self.outbox.fingerprint_retention,
        )
        self.outbox.added(queued)

        return queued

    # Life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Start one delivery worker per sink."""
        if self._tasks:
            return
        for spec, sink in self._sinks:
            task = asyncio.create_task(self._work(spec.name, sink), name=spec.name)
            task.add_done_callback(self._worker_stopped)
            self._tasks.append(task)

    def _worker_stopped(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "dispatcher.worker_failed",
                sink=task.get_name(),
                error=repr(task.exception()),
            )

    def notify(self) -> None:
        """Wake every worker: rows were enqueued."""
        for event in self._wake.values():
            event.set()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until no configured sink has rows waiting; False on *timeout*.

        Rows queued for a sink that is no longer configured do not count.
        """
        self.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        while await self._waiting() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

        return True

    async def _waiting(self) -> int:
        counts = [await self.outbox.pending(spec.name) for spec, _ in self._sinks]

        return sum(counts)

    async def aclose(self) -> None:
        """Stop the workers (a batch in flight stays queued) and close sinks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for spec, sink in self._sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("sink.close_failed", sink=spec.name)

    async def __aenter__(self) -> Dispatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per sink: delivered, failed, retried, truncated, dead_lettered."""
        return {name: asdict(stats) for name, stats in self._stats.items()}

    # Delivery ---------------------------------------------------------------

    async def _work(self, name: str, sink: Sink) -> None:
        wake = self._wake[name]
        failure: str | None = None
        attempt = 0
        while True:
            wake.clear()
            try:
                batch = await self.outbox.next_batch(name, sink.batch_size)
                if batch:
                    await self._deliver_batch(name, sink, batch)
                    failure, attempt = None, 0
                    continue
            except StateError as error:
                # A locked or failing database: the rows stay queued and an
                # unacknowledged batch is sent again after the pause.
                log.warning("outbox.unavailable", sink=name, error=str(error))
                await self._sleep(self._poll_interval)
                continue
            except Exception as error:
                # A bug on the delivery path must not stop this sink for good:
                # the batch stays queued and is tried again after a pause. A
                # failure that repeats is logged with its traceback once.
                if repr(error) != failure:
                    failure = repr(error)
                    log.exception("dispatcher.worker_error", sink=name)
                delay = self._backoff(attempt)
                log.debug(
                    "dispatcher.worker_retry",
                    sink=name,
                    attempt=attempt + 1,
                    retry_in_s=round(delay, 3),
                    error=failure,
                )
                attempt += 1
                await self._sleep(delay)
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that lands in the tick its awaitable finishes (CPython
            # gh-86296), and aclose() after a notify() then waits forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await wake.wait()

    async def _deliver_batch(
        self, name: str, sink: Sink, batch: list[tuple[int, Record | UndecodableRow]]
    ) -> None:
        """Deliver and acknowledge *batch*; rows that cannot be decoded go aside.

        Damaged rows are acknowledged first, so a later failure of the rest
        does not write them to the dead-letter file twice.
        """
        damaged = [(seq, row) for seq, row in batch if isinstance(row, UndecodableRow)]
        if damaged:
            await self._dead_letter_undecodable(name, [row for _, row in damaged])
            await self.outbox.ack(name, [seq for seq, _ in damaged])
        readable = [(seq, row) for seq, row in batch if isinstance(row, Record)]
        if readable:
            await self._deliver(name, sink, [record for _, record in readable])
            await self.outbox.ack(name, [seq for seq, _ in readable])

    async def _deliver(self, name: str, sink: Sink, records: list[Record]) -> None:
        """Send until the sink takes the batch or rejects it for good."""
        stats = self._stats[name]
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(sink.timeout):
                    result = await sink.send(records)
            except RecordsRejected as error:
                stats.delivered += len(records) - len(error.rejected)
                await self._dead_letter(name, error.rejected)
                return
            except SinkError as error:
                if not error.retryable:
                    stats.failed += 1
                    await self._dead_letter(name, [(r, str(error)) for r in records])
                    return
                reason, wait = str(error), None
                if isinstance(error, SinkThrottled):
                    wait = error.retry_after
            except TimeoutError:
                reason, wait = f"no answer within {sink.timeout}s", None
            except Exception as error:
                # A bug in a sink must not stop delivery to the others, and
                # retrying keeps the rows until the sink is fixed.
                log.exception("sink.crashed", sink=name, rows=len(records))
                reason, wait = repr(error), None
            else:
                self._delivered(name, records, result, time.monotonic() - started)
                return

            stats.failed += 1
            stats.retried += 1
            delay = self._backoff(attempt)
            if wait is not None:
                delay = max(delay, min(wait, self._retry_after_cap))
            log.warning(
                "sink.send_failed",
                sink=name,
                rows=len(records),
                attempt=attempt + 1,
                retry_in_s=round(delay, 3),
                error=reason,
            )
            attempt += 1
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """The pause before retry *attempt* (0-based), with this dispatcher's jitter."""
        return backoff_delay(
            attempt, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng
        )

    def _delivered(
        self,
        name: str,
        records: list[Record],
        result: SendResult | None,
        duration_s: float,
    ) -> None:
        stats = self._stats[name]
        stats.delivered += len(records)
        log.debug("sink.delivered", sink=name, rows=len(records), duration_s=duration_s)
        for cut in result.truncated if result else ():
            stats.truncated += 1
            log.warning(
                "sink.truncated",
                sink=name,
                event_id=cut.event_id,
                original_bytes=cut.original_bytes,
                removed_bytes=cut.removed_bytes,
            )

    async def _dead_letter(
        self, name: str, rejected: Sequence[tuple[Record, str]]
    ) -> None:
        """Append records no retry can deliver to ``dead-letter/<sink>.jsonl``.

        A folder that cannot be written (disk full, read-only, not a folder) is
        retried with backoff: the batch stays in the outbox meanwhile, and the
        worker lives on.
        """
        if not rejected:
            return
        path = self.dead_letter_dir / f"{name}.jsonl"
        lines = "".join(
            json_text({"sink": name, "error": reason, "record": record.to_dict()})
            + "\n"
            for record, reason in rejected
        ).encode("utf-8")
        await self._write_dead_letters(name, path, lines, len(rejected))
        for record, reason in rejected:
            log.error(
                "sink.dead_letter",
                sink=name,
                event_id=record.event_id,
                hunt=record.hunt_id,
                path=str(path),
                error=reason,
            )

    async def _dead_letter_undecodable(
        self, name: str, rows: Sequence[UndecodableRow]
    ) -> None:
        """Move rows whose stored record is damaged to the dead-letter file.

        No retry can make them readable; the stored text is kept as it was
        found, so what is left of the row can still be recovered by hand.
        """
        path = self.dead_letter_dir / f"{name}.jsonl"
        lines = "".join(
            json_text(
                {
                    "sink": name,
                    "error": row.reason,
                    "event_id": row.event_id,
                    "stored": row.stored,
                }
            )
            + "\n"
            for row in rows
        ).encode("utf-8")
        await self._write_dead_letters(name, path, lines, len(rows))
        for row in rows:
            log.error(
                "sink.dead_letter",
                sink=name,
                event_id=row.event_id,
                path=str(path),
                error=row.reason,
            )

    async def _write_dead_letters(
        self, name: str, path: Path, lines: bytes, rows: int
    ) -> None:
        attempt = 0
        while True:
            try:
                await self._dead_letter_calls[name].run(
                    self._append_dead_letters, path, lines
                )
                break
            except (OSError, SinkError) as error:
                delay = self._backoff(attempt)
                log.error(
                    "sink.dead_letter_failed",
                    sink=name,
                    rows=rows,
                    path=str(path),
                    attempt=attempt + 1,
                    retry_in_s=round(delay, 3),
                    error=str(error),
                )
                attempt += 1
                await self._sleep(delay)
        self._stats[name].dead_lettered += rows

    def _append_dead_letters(self, path: Path, lines: bytes) -> None:
        self.dead_letter_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(lines)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # A half-written line would spoil the file for its readers.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
