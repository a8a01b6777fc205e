"""The stdout sink: one JSON record per line, flushed per batch, for containers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import BinaryIO, Self

from runner.errors import SinkError
from runner.records import Record
from runner.sinks.base import BlockingCalls, Options, SendResult, Sink, register


@register
class StdoutSink(Sink):
    """Writes JSONL to standard output (or any binary stream, for tests)."""

    type_name = "stdout"

    def __init__(self, name: str, *, stream: BinaryIO | None = None) -> None:
        super().__init__(name)
        self._stream = stream
        self._write_lock = threading.Lock()
        self._blocking = BlockingCalls(name)

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        options.finish()
        return cls(name)

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        data = "".join(record.to_json() + "\n" for record in batch).encode("utf-8")
        # A slow reader on the pipe must block a thread of this sink's own,
        # not the event loop nor the thread pool the outbox needs.
        try:
            await self._blocking.run(self._write, data)
        except (OSError, ValueError) as error:
            raise SinkError(self.name, f"cannot write to stdout: {error}") from error

        return None

    def _write(self, data: bytes) -> None:
        stream = self._stream or sys.stdout.buffer
        with self._write_lock:
            stream.write(data)
            stream.flush()
