"""The dispatcher: fan-out, routing, retries, timeouts, dead letters, counters."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import pytest
import structlog.testing

from runner import outbox
from runner.errors import ConfigError, SinkError
from runner.outbox import Outbox
from runner.records import Record
from runner.sinks import (
    Dispatcher,
    RecordsRejected,
    SendResult,
    Sink,
    SinkThrottled,
    Truncation,
    build_sink,
)
from runner.sinks.base import LocalSinkSpec, Options, parse_duration


class DummySink(Sink):
    """Keeps what it was sent; fails or hangs on the first calls when told to."""

    type_name = "dummy"

    def __init__(
        self,
        name: str,
        *,
        failures: Sequence[BaseException] = (),
        hang_first: bool = False,
        result: SendResult | None = None,
    ) -> None:
        super().__init__(name)
        self.received: list[Record] = []
        self.calls = 0
        self._failures = list(failures)
        self._hang_first = hang_first
        self._result = result
        self.closed = False

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        options.finish()
        return cls(name)

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        self.calls += 1
        if self._hang_first and self.calls == 1:
            await asyncio.Event().wait()
        if self._failures:
            raise self._failures.pop(0)
        self.received.extend(batch)

        return self._result

    async def aclose(self) -> None:
        self.closed = True


class Sleeps:
    """An injected sleep that records the delays asked for and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def _setup(
    tmp_path: Path,
    sinks: list[tuple[LocalSinkSpec, Sink]],
    records: list[Record],
    **kwargs: object,
) -> tuple[Dispatcher, Sleeps]:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    sleeps = Sleeps()
    dispatcher = Dispatcher(
        Outbox(path),
        sinks,
        dead_letter_dir=tmp_path / "dead-letter",
        sleep=sleeps,
        **kwargs,  # type: ignore[arg-type]
    )
    dispatcher.enqueue(conn, records)
    conn.close()

    return dispatcher, sleeps


async def test_fans_out_with_routing(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Each sink gets exactly the records its severity, hunt and tag filters pass."""
    batch = (
        records(3, severity="high", hunt="h1", tags=("a",))
        + records(2, start=10, severity="low", hunt="h1", tags=("b",))
        + records(2, start=20, severity="medium", hunt="h2", tags=("a",))
    )
    everything = DummySink("all")
    serious = DummySink("serious")
    only_h2 = DummySink("h2")
    tag_b = DummySink("tag-b")
    dispatcher, _ = _setup(
        tmp_path,
        [
            (LocalSinkSpec("all", "dummy"), everything),
            (LocalSinkSpec("serious", "dummy", min_severity="medium"), serious),
            (LocalSinkSpec("h2", "dummy", hunts=("h2",)), only_h2),
            (LocalSinkSpec("tag-b", "dummy", tags=("b",)), tag_b),
        ],
        batch,
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    assert everything.received == batch
    assert serious.received == batch[:3] + batch[5:]
    assert only_h2.received == batch[5:]
    assert tag_b.received == batch[3:5]
    assert everything.closed
    assert dispatcher.stats()["all"]["delivered"] == 7


async def test_retryable_failures_retry_until_delivered(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Retryable errors are retried with growing jittered delays; rows arrive once."""
    failing = DummySink(
        "flaky", failures=[SinkError("flaky", "503", retryable=True)] * 3
    )
    dispatcher, sleeps = _setup(
        tmp_path,
        [(LocalSinkSpec("flaky", "dummy"), failing)],
        records(4),
        backoff_base=1.0,
        rng=lambda: 1.0,
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    assert [r.event_id for r in failing.received] == [r.event_id for r in records(4)]
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert dispatcher.stats()["flaky"] == {
        "delivered": 4,
        "failed": 3,
        "retried": 3,
        "truncated": 0,
        "dead_lettered": 0,
    }


async def test_retry_after_is_honoured(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A throttled sink waits at least the receiver's Retry-After."""
    sink = DummySink("hec", failures=[SinkThrottled("hec", "429", retry_after=7.0)])
    dispatcher, sleeps = _setup(
        tmp_path, [(LocalSinkSpec("hec", "dummy"), sink)], records(1), rng=lambda: 0.0
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    assert sleeps.delays == [7.0]


async def test_hanging_sink_does_not_block_others(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A sink that hangs times out and retries while the other sink delivers."""
    hanging = DummySink("slow", hang_first=True)
    hanging.timeout = 0.3
    healthy = DummySink("fast")
    dispatcher, _ = _setup(
        tmp_path,
        [
            (LocalSinkSpec("slow", "dummy"), hanging),
            (LocalSinkSpec("fast", "dummy"), healthy),
        ],
        records(5),
    )
    async with dispatcher:
        for _ in range(200):
            if len(healthy.received) == 5:
                break
            await asyncio.sleep(0.01)
        assert len(healthy.received) == 5
        assert hanging.received == []
        assert await dispatcher.drain(timeout=5)

    assert len(hanging.received) == 5
    assert dispatcher.stats()["slow"]["retried"] == 1


async def test_non_retryable_goes_to_dead_letter(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A batch rejected for good lands in the dead-letter file and leaves the outbox."""
    sink = DummySink("siem", failures=[SinkError("siem", "400 bad", retryable=False)])
    dispatcher, _ = _setup(
        tmp_path, [(LocalSinkSpec("siem", "dummy"), sink)], records(3)
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    path = tmp_path / "dead-letter" / "siem.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["record"]["event_id"] for line in lines] == [
        r.event_id for r in records(3)
    ]
    assert lines[0]["error"] == "sink siem: 400 bad"
    assert path.stat().st_mode & 0o777 == 0o600
    assert dispatcher.stats()["siem"]["dead_lettered"] == 3


async def test_partial_rejection_dead_letters_only_the_rejected(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """When a sink rejects some records, only those are dead-lettered."""
    batch = records(3)
    sink = DummySink("es", failures=[RecordsRejected("es", [(batch[1], "mapping")])])
    dispatcher, _ = _setup(tmp_path, [(LocalSinkSpec("es", "dummy"), sink)], batch)
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    lines = (tmp_path / "dead-letter" / "es.jsonl").read_text().splitlines()
    assert [json.loads(line)["record"]["event_id"] for line in lines] == [
        batch[1].event_id
    ]
    assert dispatcher.stats()["es"]["delivered"] == 2


async def test_truncations_are_counted(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Truncations a sink reports are counted per sink."""
    cut = Truncation("abc", original_bytes=5000, removed_bytes=3000)
    sink = DummySink("syslog", result=SendResult(truncated=(cut,)))
    dispatcher, _ = _setup(
        tmp_path, [(LocalSinkSpec("syslog", "dummy"), sink)], records(1)
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    assert dispatcher.stats()["syslog"]["truncated"] == 1


def test_unknown_sink_type_lists_known_types() -> None:
    """An unknown type names the file, line and every known type."""
    spec = LocalSinkSpec("x", "kafka", source="config/sinks.yaml", line=12)
    with pytest.raises(ConfigError) as caught:
        build_sink(spec)

    message = str(caught.value)
    assert message.startswith("config/sinks.yaml:12: sink x: unknown sink type 'kafka'")
    assert "file, " in message and "stdout" in message


def test_unknown_option_is_a_problem_with_location() -> None:
    """A sink rejects keys it does not know, reporting every problem at file:line."""
    spec = LocalSinkSpec(
        "out",
        "file",
        options={"pathh": "x", "format": "xml", "batch_size": 0},
        source="s.yaml",
        line=3,
    )
    with pytest.raises(ConfigError) as caught:
        build_sink(spec)

    assert [str(p) for p in caught.value.problems] == [
        "s.yaml:3: sink out: batch_size: expected an integer >= 1",
        "s.yaml:3: sink out: format: expected one of jsonl, csv, got 'xml'",
        "s.yaml:3: sink out: unknown option 'pathh'",
    ]


def test_build_sink_reads_delivery_options(tmp_path: Path) -> None:
    """``batch_size`` and ``timeout`` are read once for every sink type."""
    sink = build_sink(
        LocalSinkSpec(
            "out",
            "file",
            options={"path": str(tmp_path), "batch_size": 50, "timeout": 5},
        )
    )

    assert (sink.batch_size, sink.timeout) == (50, 5.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        (90, 90.0),
        ("0s", None),
        ("soon", None),
    ],
)
def test_parse_duration(text: object, seconds: float | None) -> None:
    """Durations read as seconds; zero and nonsense are refused."""
    assert parse_duration(text) == seconds


async def test_failures_and_dead_letters_are_logged_as_events(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A retry logs one warning per attempt and a dead letter one error per record."""
    batch = records(1)
    sink = DummySink(
        "siem",
        failures=[
            SinkError("siem", "503", retryable=True),
            SinkError("siem", "400", retryable=False),
        ],
    )
    dispatcher, _ = _setup(
        tmp_path, [(LocalSinkSpec("siem", "dummy"), sink)], batch, rng=lambda: 0.5
    )
    with structlog.testing.capture_logs() as logs:
        async with dispatcher:
            assert await dispatcher.drain(timeout=5)

    assert logs == [
        {
            "event": "sink.send_failed",
            "log_level": "warning",
            "sink": "siem",
            "rows": 1,
            "attempt": 1,
            "retry_in_s": 0.25,
            "error": "sink siem: 503",
        },
        {
            "event": "sink.dead_letter",
            "log_level": "error",
            "sink": "siem",
            "event_id": batch[0].event_id,
            "hunt": batch[0].hunt_id,
            "path": str(tmp_path / "dead-letter" / "siem.jsonl"),
            "error": "sink siem: 400",
        },
    ]


async def test_drain_ignores_rows_of_unconfigured_sinks(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Rows left for a sink no longer configured do not hold up ``drain``."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    outbox.enqueue(conn, records(2), ["retired"])
    sink = DummySink("current")
    dispatcher, _ = _setup(
        tmp_path, [(LocalSinkSpec("current", "dummy"), sink)], records(2)
    )
    async with dispatcher:
        assert await dispatcher.drain(timeout=2)

    assert len(sink.received) == 2


def test_route_limits_to_the_hunt_sinks(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """``route`` keeps only the named sinks whose filters pass the record."""
    specs = [
        LocalSinkSpec("all", "dummy"),
        LocalSinkSpec("serious", "dummy", min_severity="high"),
        LocalSinkSpec("other", "dummy"),
    ]
    dispatcher, _ = _setup(
        tmp_path, [(spec, DummySink(spec.name)) for spec in specs], []
    )
    record = records(1, severity="medium")[0]

    assert dispatcher.route(record) == ["all", "other"]
    assert dispatcher.route(record, among=["all", "serious"]) == ["all"]


def test_config_sink_spec_builds_a_sink(tmp_path: Path) -> None:
    """The configuration's ``SinkSpec`` is accepted by ``build_sink`` as it is."""
    from runner.config import SinkSpec

    spec = SinkSpec(
        name="files",
        type="file",
        options={"path": str(tmp_path), "format": "csv"},
        min_severity="medium",
        hunts=(),
        tags=(),
        source="config/sinks.yaml",
        line=4,
    )

    assert build_sink(spec).name == "files"


async def test_unwritable_dead_letter_folder_keeps_the_worker_alive(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A dead letter that cannot be written is retried; the sink keeps delivering."""
    blocker = tmp_path / "dead-letter"
    blocker.write_text("a file where the folder should be")
    batch = records(3)
    sink = DummySink("siem", failures=[SinkError("siem", "400", retryable=False)])
    sink.batch_size = 1
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            blocker.unlink()
        await asyncio.sleep(0)

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    dispatcher = Dispatcher(
        Outbox(path),
        [(LocalSinkSpec("siem", "dummy"), sink)],
        dead_letter_dir=blocker,
        sleep=sleep,
    )
    dispatcher.enqueue(conn, batch)
    conn.close()
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    letters = (tmp_path / "dead-letter" / "siem.jsonl").read_text().splitlines()
    assert [json.loads(line)["record"]["event_id"] for line in letters] == [
        batch[0].event_id
    ]
    assert [r.event_id for r in sink.received] == [r.event_id for r in batch[1:]]
    assert len(delays) >= 3


async def test_rows_of_unconfigured_sinks_do_not_fill_the_outbox(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A backlog left for a removed sink does not stop hunts from fetching."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    outbox.enqueue(conn, records(5), ["retired"])
    conn.close()
    box = Outbox(path, capacity=3)
    sink = DummySink("current")
    dispatcher = Dispatcher(
        box, [(LocalSinkSpec("current", "dummy"), sink)], dead_letter_dir=tmp_path
    )
    async with dispatcher:
        await asyncio.wait_for(box.wait_for_room(poll=0.05), 2)
        assert not box.is_full()


async def test_close_right_after_drain_never_hangs(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """aclose() just after drain() stops the workers, even when both land at once."""
    for attempt in range(30):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        sink = DummySink("all")
        dispatcher, _ = _setup(
            folder, [(LocalSinkSpec("all", "dummy"), sink)], records(2)
        )
        dispatcher.start()
        assert await dispatcher.drain(timeout=5)
        await asyncio.sleep(0.01)
        # A run's notify wakes the idle workers; the cancel lands in that tick.
        dispatcher.notify()
        await asyncio.wait_for(dispatcher.aclose(), 5)

        assert sink.closed


async def test_an_undecodable_outbox_row_is_dead_lettered_and_the_rest_delivered(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A damaged outbox row goes to the dead-letter file; the rows around it arrive."""
    batch = records(4)
    sink = DummySink("siem")
    dispatcher, _ = _setup(tmp_path, [(LocalSinkSpec("siem", "dummy"), sink)], batch)
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    conn.execute(
        "UPDATE outbox SET record = '{\"event_id\": tru' WHERE event_id = ?",
        (batch[1].event_id,),
    )
    conn.execute(
        "UPDATE outbox SET record = CAST(X'80FF7B' AS TEXT) WHERE event_id = ?",
        (batch[2].event_id,),
    )
    conn.close()
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    assert sink.received == [batch[0], batch[3]]
    path = tmp_path / "dead-letter" / "siem.jsonl"
    letters = [json.loads(line) for line in path.read_text().splitlines()]
    assert [letter["event_id"] for letter in letters] == [
        batch[1].event_id,
        batch[2].event_id,
    ]
    assert letters[0]["stored"] == '{"event_id": tru'
    assert letters[0]["error"].startswith("cannot decode outbox row: JSONDecodeError")
    assert letters[1]["error"].startswith("cannot decode outbox row: UnicodeDecode")
    assert await dispatcher.outbox.pending() == 0
    assert dispatcher.stats()["siem"]["dead_lettered"] == 2


class BadResultSink(DummySink):
    """Returns something that is not a ``SendResult`` for its first *bad* sends."""

    def __init__(self, name: str, *, bad: int) -> None:
        super().__init__(name)
        self._bad = bad

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        await super().send(batch)
        if self.calls <= self._bad:
            return "not a result"  # type: ignore[return-value]

        return None


async def test_a_failure_outside_send_backs_off_and_the_worker_lives_on(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """An error on the delivery path outside send is logged once and retried."""
    sink = BadResultSink("siem", bad=3)
    dispatcher, sleeps = _setup(
        tmp_path,
        [(LocalSinkSpec("siem", "dummy"), sink)],
        records(2),
        backoff_base=1.0,
        rng=lambda: 1.0,
    )
    with structlog.testing.capture_logs() as logs:
        async with dispatcher:
            assert await dispatcher.drain(timeout=5)

    errors = [entry for entry in logs if entry["event"] == "dispatcher.worker_error"]
    assert errors == [
        {
            "event": "dispatcher.worker_error",
            "log_level": "error",
            "exc_info": True,
            "sink": "siem",
        }
    ]
    assert sleeps.delays == [1.0, 2.0, 4.0]
    assert sink.calls == 4
    assert await dispatcher.outbox.pending() == 0


@pytest.mark.parametrize(
    "damage",
    [
        ("$.row", "[1, 2]"),
        ("$.hunt.id", "7"),
        ("$.hunt.severity", "null"),
        ("$.hunt.tags", '"not a list"'),
        ("$.window.end", '"2026-12-03"'),
    ],
)
async def test_an_outbox_row_of_the_wrong_shape_is_dead_lettered(
    tmp_path: Path, records: Callable[..., list[Record]], damage: tuple[str, str]
) -> None:
    """Valid JSON with a field of the wrong type is set aside, not retried forever."""
    batch = records(3)
    folder = tmp_path / "out"
    sink = build_sink(LocalSinkSpec("files", "file", options={"path": str(folder)}))
    dispatcher, _ = _setup(
        tmp_path, [(LocalSinkSpec("files", "file"), sink)], batch, rng=lambda: 0.0
    )
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    where, value = damage
    conn.execute(
        "UPDATE outbox SET record = json_set(record, ?, json(?)) WHERE event_id = ?",
        (where, value, batch[1].event_id),
    )
    conn.close()
    async with dispatcher:
        assert await dispatcher.drain(timeout=5)

    lines = (folder / "suspicious-powershell.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        batch[0].event_id,
        batch[2].event_id,
    ]
    path = tmp_path / "dead-letter" / "files.jsonl"
    (letter,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert letter["event_id"] == batch[1].event_id
    assert letter["error"].startswith("cannot decode outbox row: ")


async def test_a_blocked_dead_letter_write_does_not_stop_the_event_loop(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A dead-letter file that blocks (a FIFO nobody reads) holds up only its sink."""
    rejecting = DummySink("siem", failures=[SinkError("siem", "no", retryable=False)])
    healthy = DummySink("archive")
    dispatcher, _ = _setup(
        tmp_path,
        [
            (LocalSinkSpec("siem", "dummy"), rejecting),
            (LocalSinkSpec("archive", "dummy"), healthy),
        ],
        records(3),
    )
    folder = tmp_path / "dead-letter"
    folder.mkdir()
    os.mkfifo(folder / "siem.jsonl")

    def read_later() -> None:
        # Opening the FIFO lets the blocked writer on; fsync fails on a FIFO,
        # so its retry, once the FIFO is gone, writes a regular file.
        time.sleep(1.5)
        with open(folder / "siem.jsonl", "rb") as fifo:
            os.unlink(folder / "siem.jsonl")
            fifo.read()

    reader = threading.Thread(target=read_later, daemon=True)
    reader.start()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    ticker = asyncio.create_task(tick())
    async with dispatcher:
        assert await dispatcher.drain(timeout=10)
    ticker.cancel()
    reader.join(5)

    assert len((folder / "siem.jsonl").read_text().splitlines()) == 3
    assert len(healthy.received) == 3
    assert max(gaps) < 0.5
