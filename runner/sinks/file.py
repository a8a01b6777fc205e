"""The file sink: JSONL or CSV files in a folder, rotated by size and by time.

Each batch becomes one ``write`` per file on an ``O_APPEND`` descriptor,
followed by ``fsync``; a crash can only leave a partial last line, which the
sink cuts off the first time it opens the file again. Files are created with
mode 0600 in a 0700 folder. Rotated files are renamed with their rotation
time and gzip-compressed in a worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from runner.errors import SinkError
from runner.records import Record, json_text, utf8_safe
from runner.sinks.base import BlockingCalls, Options, SendResult, Sink, register

# The longest hunt id in UTF-8 (``runner.hunts``); file names derived from
# ids stay within it.
_NAME_BYTES = 200

# What ``_rotate`` appends to a file's stem: a UTC stamp and a counter.
_ROTATION_SUFFIX = re.compile(r"\.\d{8}T\d{6}Z(-\d+)?$")

ENVELOPE_COLUMNS = (
    "event_id",
    "hunt_id",
    "hunt_name",
    "severity",
    "tenant",
    "window_start",
    "window_end",
    "run_id",
    "tags",
)


@dataclass
class _OpenFile:
    path: Path
    fd: int
    size: int
    opened_bucket: int
    columns: tuple[str, ...] = ()


@register
class FileSink(Sink):
    """Appends records to files under a folder, one file per hunt and/or day."""

    type_name = "file"

    def __init__(
        self,
        name: str,
        *,
        folder: Path,
        format: str = "jsonl",
        per: str = "hunt",
        rotate_bytes: int | None = None,
        rotate_interval: float | None = None,
        compress: bool = True,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        self.folder = folder
        self.format = format
        self.per = per
        self.rotate_bytes = rotate_bytes
        self.rotate_interval = rotate_interval
        self.compress = compress
        self.fsync = fsync
        self._clock = clock
        self._files: dict[str, _OpenFile] = {}
        self._compressions: set[asyncio.Task[None]] = set()
        # A send the dispatcher timed out may still be writing in its thread;
        # the retry waits for it instead of interleaving with it.
        self._write_lock = threading.Lock()
        # A write stuck on a hung file system holds this sink's thread only.
        self._blocking = BlockingCalls(name)

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        folder = options.path("path", "out")
        file_format = options.choice("format", ("jsonl", "csv"), "jsonl")
        per = options.choice("per", ("hunt", "day", "hunt-day"), "hunt")
        rotate_bytes = options.integer("rotate_bytes", 0, minimum=1) or None
        rotate_interval = options.duration("rotate_interval", None)
        compress = options.boolean("compress", True)
        fsync = options.boolean("fsync", True)
        options.finish()
        assert folder is not None

        return cls(
            name,
            folder=folder,
            format=file_format,
            per=per,
            rotate_bytes=rotate_bytes,
            rotate_interval=rotate_interval,
            compress=compress,
            fsync=fsync,
        )

    # Sending ----------------------------------------------------------------

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        groups: dict[str, list[Record]] = {}
        for record in batch:
            groups.setdefault(self._stem(record), []).append(record)
        try:
            rotated = await self._blocking.run(self._write_groups, groups)
        except OSError as error:
            raise SinkError(self.name, f"cannot write: {error}") from error
        for path in rotated:
            self._start_compression(path)

        return None

    def _stem(self, record: Record) -> str:
        day = record.window_end.astimezone(UTC).strftime("%Y-%m-%d")
        hunt = _safe_name(record.hunt_id)
        if self.per == "day":
            return day
        if self.per == "hunt-day":
            return f"{hunt}-{day}"

        return hunt

    def _write_groups(self, groups: dict[str, list[Record]]) -> list[Path]:
        rotated: list[Path] = []
        with self._write_lock:
            for stem, records in groups.items():
                rotated.extend(self._write_file(stem, records))

        return rotated

    def _write_file(self, stem: str, records: list[Record]) -> list[Path]:
        rotated: list[Path] = []
        handle = self._open(stem)
        if self.format == "csv":
            columns = _csv_columns(records, handle.columns)
            if handle.columns and columns != handle.columns:
                # New row keys: a new file with the wider header keeps every value.
                rotated.append(self._rotate(stem))
                handle = self._open(stem)
            if not handle.columns:
                handle.columns = columns
            data = _csv_bytes(records, handle.columns, header=handle.size == 0)
        else:
            data = "".join(record.to_json() + "\n" for record in records).encode()

        now = self._clock()
        too_big = self.rotate_bytes and handle.size > 0
        too_big = too_big and handle.size + len(data) > (self.rotate_bytes or 0)
        if too_big or (handle.size > 0 and self._bucket(now) != handle.opened_bucket):
            rotated.append(self._rotate(stem))
            handle = self._open(stem)
            if self.format == "csv":
                handle.columns = _csv_columns(records, ())
                data = _csv_bytes(records, handle.columns, header=True)

        try:
            _write_all(handle.fd, data)
            if self.fsync:
                os.fsync(handle.fd)
        except OSError:
            # A full disk or a quota can stop a write halfway: cut the file
            # back to its last whole line, so the retry appends after it.
            try:
                os.ftruncate(handle.fd, handle.size)
            except OSError:
                # Reopening repairs the partial line before the next write.
                self._files.pop(stem, None)
                os.close(handle.fd)
            raise
        handle.size += len(data)

        return rotated

    # Files ------------------------------------------------------------------

    def _bucket(self, moment: float) -> int:
        if not self.rotate_interval:
            return 0

        return int(moment // self.rotate_interval)

    def _open(self, stem: str) -> _OpenFile:
        handle = self._files.get(stem)
        if handle is not None:
            return handle
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{stem}.{self.format}"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        size = _repair_partial_line(fd)
        stat = os.fstat(fd)
        # A file left by an earlier process belongs to the interval of its
        # last write; an empty one to now.
        bucket = self._bucket(stat.st_mtime if size else self._clock())
        columns: tuple[str, ...] = ()
        if self.format == "csv" and size:
            columns = _read_csv_header(path)
        handle = _OpenFile(path, fd, size, bucket, columns)
        self._files[stem] = handle

        return handle

    def _rotate(self, stem: str) -> Path:
        handle = self._files.pop(stem)
        os.close(handle.fd)
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        target = handle.path.with_name(f"{stem}.{stamp}.{self.format}")
        counter = 1
        while target.exists() or Path(f"{target}.gz").exists():
            target = handle.path.with_name(f"{stem}.{stamp}-{counter}.{self.format}")
            counter += 1
        os.rename(handle.path, target)

        return target

    def _start_compression(self, path: Path) -> None:
        # XXX: a rotated file whose compression a crash interrupted stays
        # uncompressed (its lines are all there); nothing compresses it later.
        if not self.compress:
            return
        task = asyncio.create_task(asyncio.to_thread(_gzip_file, path))
        self._compressions.add(task)
        task.add_done_callback(self._compressions.discard)

    async def aclose(self) -> None:
        if self._compressions:
            await asyncio.gather(*self._compressions, return_exceptions=True)
        for handle in self._files.values():
            os.close(handle.fd)
        self._files.clear()


def _safe_name(text: str) -> str:
    """A file name for the hunt id *text*, a different one for every id.

    An id of letters, digits, ``-``, ``_`` and ``.`` is its own name. In any
    other id every other character becomes ``_``, and ``~`` and a hash of the
    id are appended, so ``a:b`` and ``a_b`` never share a file (no name kept
    as it is holds a ``~``). So is an id that ends like a rotated file's name
    (``a.20261203T120000Z``), which would otherwise write into the file hunt
    ``a`` rotated at that moment, and lose its rows when that is compressed.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    if text and safe == text and not _ROTATION_SUFFIX.search(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    # No longer than the longest id a hunt may have, for which the day and
    # rotation suffixes were measured to fit a file name.
    head = safe.encode()[: _NAME_BYTES - 9].decode("utf-8", errors="ignore")

    return f"{head}~{digest[:8]}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _repair_partial_line(fd: int) -> int:
    """Cut a trailing partial line left by a crash; returns the file's size."""
    # XXX: a CSV value holding a newline is quoted across lines, so a crash in
    # the middle of such a record can leave its first physical lines behind.
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    if os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    chunk = 65536
    while end > 0:
        start = max(0, end - chunk)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            os.ftruncate(fd, keep)
            return keep
        end = start
    os.ftruncate(fd, 0)

    return 0


def _gzip_file(path: Path) -> None:
    target = Path(f"{path}.gz")
    partial = Path(f"{path}.gz.partial")
    with open(path, "rb") as source:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with (
            os.fdopen(descriptor, "wb") as raw,
            gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw) as compressed,
        ):
            shutil.copyfileobj(source, compressed, 1 << 20)
        with open(partial, "rb+") as raw_again:
            os.fsync(raw_again.fileno())
    os.rename(partial, target)
    os.unlink(path)


def _csv_columns(
    records: Sequence[Record], existing: tuple[str, ...]
) -> tuple[str, ...]:
    columns = list(existing) or list(ENVELOPE_COLUMNS)
    known = set(columns)
    for record in records:
        for key in record.row:
            if key not in known:
                known.add(key)
                columns.append(key)

    return tuple(columns)


def _csv_bytes(
    records: Sequence[Record], columns: tuple[str, ...], *, header: bool
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for record in records:
        values = _csv_values(record)
        writer.writerow([values.get(column, "") for column in columns])

    return utf8_safe(buffer.getvalue()).encode("utf-8")


def _csv_values(record: Record) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": record.event_id,
        "hunt_id": record.hunt_id,
        "hunt_name": record.hunt_name,
        "severity": record.severity,
        "tenant": record.tenant,
        "window_start": record.window_start.isoformat(),
        "window_end": record.window_end.isoformat(),
        "run_id": record.run_id,
        "tags": ";".join(record.tags),
    }
    for key, value in record.row.items():
        if isinstance(value, dict | list):
            value = json_text(value)
        elif value is None:
            value = ""
        # A row key that shadows an envelope column keeps the envelope's value.
        values.setdefault(key, value)

    return values


def _read_csv_header(path: Path) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])

    return tuple(header)
