"""The sink contract, the registry of sink types, and routing.

A sink takes a batch of records with ``send`` and lets go of its connections
with ``aclose``. It raises ``SinkError`` when it cannot take a batch and never
retries on its own: the dispatcher retries, counts and logs. Options shared by
every sink (name, type, filters) are parsed by the configuration; the
delivery options ``batch_size`` and ``timeout`` are read here; everything else
belongs to the sink, which rejects keys it does not know.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from runner import secrets
from runner.errors import ConfigError, Problem, SinkError
from runner.records import Record, severity_rank
from runner.secrets import Secret


class SinkSpecLike(Protocol):
    """The fields of ``runner.config.SinkSpec`` that sinks and routing read."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def options(self) -> Mapping[str, Any]: ...
    @property
    def min_severity(self) -> str | None: ...
    @property
    def hunts(self) -> tuple[str, ...]: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def source(self) -> str: ...
    @property
    def line(self) -> int: ...


@dataclass(frozen=True)
class Truncation:
    """A record a sink had to shorten: how long it was and what was cut."""

    event_id: str
    original_bytes: int
    removed_bytes: int


@dataclass(frozen=True)
class SendResult:
    """What a sink reports beyond success: records it altered on the way."""

    truncated: tuple[Truncation, ...] = ()


class SinkThrottled(SinkError):
    """The receiver asked us to wait (HTTP 429); ``retry_after`` in seconds."""

    def __init__(self, sink: str, message: str, *, retry_after: float | None) -> None:
        super().__init__(sink, message, retryable=True)
        self.retry_after = retry_after


class RecordsRejected(SinkError):
    """The batch was delivered except ``rejected``, which no retry can deliver.

    Each entry is (record, reason); the dispatcher writes them to the sink's
    dead-letter file and acknowledges the whole batch.
    """

    def __init__(self, sink: str, rejected: Sequence[tuple[Record, str]]) -> None:
        super().__init__(sink, f"{len(rejected)} record(s) rejected", retryable=False)
        self.rejected = list(rejected)


class OptionError(Exception):
    """A sink's own options are wrong; ``build_sink`` adds the file and line."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


class Options:
    """Reads a sink's option mapping, collecting every problem before failing."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)
        self._seen: set[str] = set()
        self.problems: list[str] = []

    def _get(self, key: str) -> Any:
        self._seen.add(key)
        return self._values.get(key)

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            self.problems.append(f"{key}: expected a non-empty string")
            return default

        return value

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append(f"{key}: expected an integer >= {minimum}")
            return default

        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{key}: expected a number")
            return default
        if value <= minimum:
            self.problems.append(f"{key}: must be greater than {minimum}")
            return default

        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(f"{key}: expected true or false")
            return default

        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if value not in choices:
            known = ", ".join(choices)
            self.problems.append(f"{key}: expected one of {known}, got {value!r}")
            return default

        return str(value)

    def duration(self, key: str, default: float | None) -> float | None:
        """Seconds from ``30s``, ``15m``, ``6h``, ``1d`` or a plain number."""
        value = self._get(key)
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None:
            self.problems.append(f"{key}: expected a duration like 30s, 15m, 6h, 1d")
            return default

        return seconds

    def path(self, key: str, default: str | None = None) -> Path | None:
        text = self.string(key, default)
        return Path(text).expanduser() if text is not None else None

    def secret(self, key: str) -> Secret | None:
        """A secret given as ``{env: NAME}`` or ``{file: PATH}``."""
        value = self._get(key)
        if value is None:
            return None

        return self.resolve_secret(key, value)

    def resolve_secret(self, key: str, value: Any) -> Secret | None:
        if isinstance(value, Mapping) and len(value) == 1:
            ((kind, where),) = value.items()
            try:
                if kind == "env":
                    return secrets.from_env(str(where))
                if kind == "file":
                    return secrets.from_file(str(where))
            except (KeyError, OSError, ValueError) as error:
                self.problems.append(f"{key}: {error}")
                return None
        self.problems.append(f"{key}: expected {{env: NAME}} or {{file: PATH}}")

        return None

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.append(f"{key}: expected a mapping")
            return {}

        return value

    def finish(self) -> None:
        """Fail with every problem found, including keys nobody asked for."""
        for key in sorted(set(self._values) - self._seen):
            self.problems.append(f"unknown option {key!r}")
        if self.problems:
            raise OptionError(self.problems)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float | None:
    """Seconds in ``value`` (``90``, ``30s``, ``15m``, ``6h``, ``1d``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    match = _DURATION.match(str(value))
    if match is None or float(match.group(1)) <= 0:
        return None

    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Sink(abc.ABC):
    """A destination for records. Subclasses implement ``from_options`` and ``send``."""

    type_name: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        # Delivery options the dispatcher reads; ``build_sink`` sets them.
        self.batch_size = 500
        self.timeout = 30.0

    @classmethod
    @abc.abstractmethod
    def from_options(cls, name: str, options: Options) -> Self:
        """Build the sink from its own options; call ``options.finish()``."""

    @abc.abstractmethod
    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        """Deliver *batch* or raise ``SinkError``; never retry here."""

    async def aclose(self) -> None:
        """Let go of connections and files."""
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


T = TypeVar("T")


class BlockingCalls:
    """Runs one sink's blocking I/O on a daemon thread of its own, one call at a time.

    A write that blocks for good (a pipe nobody reads, a hung file system)
    then holds up only its own sink: it takes no thread from the default pool
    that the outbox and the state file need, a retry while it still runs
    fails at once instead of blocking one more thread, and it does not keep
    the process from exiting.
    """

    def __init__(self, sink: str) -> None:
        self._sink = sink
        # Set while a call runs; cleared by its thread before the caller
        # hears the outcome, so the caller's next call never finds it set.
        self._busy = threading.Event()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        if self._busy.is_set():
            raise SinkError(self._sink, "the previous write has not returned yet")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Any, error: BaseException | None) -> None:
            if future.done():  # the caller timed out and went away
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outcome)

        def work() -> None:
            outcome: Any = None
            error: BaseException | None = None
            try:
                outcome = function(*args)
            except BaseException as caught:
                error = caught
            finally:
                self._busy.clear()
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(settle, outcome, error)

        self._busy.set()
        thread = threading.Thread(target=work, name=f"sink-{self._sink}", daemon=True)
        thread.start()

        return await future


SINK_TYPES: dict[str, type[Sink]] = {}


def register(cls: type[Sink]) -> type[Sink]:
    """Class decorator: make *cls* available as ``type: <cls.type_name>``."""
    SINK_TYPES[cls.type_name] = cls
    return cls


def build_sink(spec: SinkSpecLike) -> Sink:
    """The sink *spec* describes; ``ConfigError`` with file:line on any problem."""
    cls = SINK_TYPES.get(spec.type)
    if cls is None:
        known = ", ".join(sorted(SINK_TYPES))
        message = f"sink {spec.name}: unknown sink type {spec.type!r}; known: {known}"
        raise ConfigError([Problem(spec.source, spec.line, message)])
    options = Options(spec.options)
    batch_size = options.integer("batch_size", 500)
    timeout = options.number("timeout", 30.0)
    try:
        sink = cls.from_options(spec.name, options)
    except OptionError as error:
        problems = [
            Problem(spec.source, spec.line, f"sink {spec.name}: {message}")
            for message in error.messages
        ]
        raise ConfigError(problems) from None
    sink.batch_size = batch_size
    sink.timeout = timeout

    return sink


def accepts(spec: SinkSpecLike, record: Record) -> bool:
    """Whether *record* passes the sink's filters: severity, hunts and tags."""
    if spec.min_severity is not None and severity_rank(record.severity) < severity_rank(
        spec.min_severity
    ):
        return False
    if spec.hunts and record.hunt_id not in spec.hunts:
        return False
    if spec.tags and not set(spec.tags) & set(record.tags):
        return False

    return True


@dataclass(frozen=True)
class LocalSinkSpec:
    """A ``SinkSpec`` stand-in for building sinks in code (tests, benchmarks)."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)
    min_severity: str | None = None
    hunts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = "<code>"
    line: int = 0
