"""The file sink: whole lines, rotation that keeps every line, modes, CSV."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.errors import SinkError
from runner.records import Record
from runner.sinks import build_sink
from runner.sinks.base import LocalSinkSpec
from runner.sinks.file import FileSink


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_764_763_200.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _all_lines(folder: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".gz"):
            lines.extend(gzip.decompress(path.read_bytes()).decode().splitlines())
        else:
            lines.extend(path.read_text().splitlines())

    return lines


async def test_jsonl_lines_and_modes(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Each record is one JSON line in a 0600 file inside a 0700 folder."""
    folder = tmp_path / "out"
    sink = build_sink(LocalSinkSpec("files", "file", options={"path": str(folder)}))
    async with sink:
        await sink.send(records(3))

    path = folder / "suspicious-powershell.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == [r.event_id for r in records(3)]
    assert path.stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700


async def test_rotation_by_size_keeps_every_line(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Size rotation compresses old files and loses or repeats no line."""
    sink = FileSink("files", folder=tmp_path, rotate_bytes=2000, clock=Clock())
    sent = records(60)
    async with sink:
        for start in range(0, 60, 4):
            await sink.send(sent[start : start + 4])

    names = sorted(p.name for p in tmp_path.iterdir())
    assert len([n for n in names if n.endswith(".jsonl.gz")]) >= 5
    assert not [n for n in names if n.endswith(".partial")]
    ids = sorted(json.loads(line)["event_id"] for line in _all_lines(tmp_path))
    assert ids == sorted(r.event_id for r in sent)


async def test_rotation_by_time(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A write in a new interval rotates the file first; no line is lost."""
    clock = Clock()
    sink = FileSink("files", folder=tmp_path, rotate_interval=3600, clock=clock)
    async with sink:
        await sink.send(records(2))
        clock.now += 1800
        await sink.send(records(2, start=2))
        clock.now += 3600
        await sink.send(records(2, start=4))

    rotated = sorted(tmp_path.glob("*.jsonl.gz"))
    assert len(rotated) == 1
    assert len(gzip.decompress(rotated[0].read_bytes()).splitlines()) == 4
    assert len(_all_lines(tmp_path)) == 6


async def test_partial_line_is_repaired(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A half-written last line left by a crash is cut before appending."""
    path = tmp_path / "suspicious-powershell.jsonl"
    good = records(1)[0].to_json() + "\n"
    path.write_text(good + '{"event_id":"half-wri')
    sink = FileSink("files", folder=tmp_path)
    async with sink:
        await sink.send(records(1, start=1))

    lines = path.read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        r.event_id for r in records(2)
    ]


async def test_csv_header_and_flattened_rows(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """CSV files carry one header, envelope columns first, dynamic values as JSON."""
    sink = FileSink("files", folder=tmp_path, format="csv", per="day")
    nested = records(1, row={"DeviceName": "a", "Extra": {"k": [1, 2]}})
    async with sink:
        await sink.send(records(2))
        await sink.send(records(1, start=2))
        await sink.send(nested)

    rotated = sorted(tmp_path.glob("*.csv.gz"))
    # New row keys start a new file with the wider header.
    assert len(rotated) == 1
    first = list(
        csv.DictReader(io.StringIO(gzip.decompress(rotated[0].read_bytes()).decode()))
    )
    assert list(first[0])[:3] == ["event_id", "hunt_id", "hunt_name"]
    assert [row["Count"] for row in first] == ["0", "1", "2"]
    last = list(csv.DictReader(io.StringIO((tmp_path / "2026-12-03.csv").read_text())))
    assert last[0]["Extra"] == '{"k":[1,2]}'


async def test_reopens_existing_csv_without_second_header(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A restarted sink appends to an existing CSV under its header."""
    for start in (0, 1):
        sink = FileSink("files", folder=tmp_path, format="csv", compress=False)
        async with sink:
            await sink.send(records(1, start=start))

    text = (tmp_path / "suspicious-powershell.csv").read_text()
    assert text.count("event_id,") == 1
    assert len(list(csv.DictReader(io.StringIO(text)))) == 2


async def test_unwritable_folder_is_a_sink_error(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A write failure surfaces as a retryable SinkError, not an OSError."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    sink = FileSink("files", folder=blocker / "out")
    with pytest.raises(SinkError) as caught:
        await sink.send(records(1))
    await sink.aclose()

    assert caught.value.retryable


FULL_DISK_CHILD = """
import asyncio, resource, signal, sys
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from pathlib import Path
from conftest import make_record
from runner.errors import SinkError
from runner.sinks.file import FileSink

async def main(folder):
    sink = FileSink("files", folder=folder, compress=False)
    await sink.send([make_record(0)])
    size = (folder / "suspicious-powershell.jsonl").stat().st_size
    # The file may grow by 500 more bytes, as on a disk about to fill up.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 500, hard))
    try:
        await sink.send([make_record(n) for n in range(1, 4)])
    except SinkError:
        print("write failed")
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    await sink.send([make_record(n) for n in range(1, 4)])
    await sink.aclose()

asyncio.run(main(Path(sys.argv[1])))
"""


def test_failed_write_leaves_no_half_line(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """A write cut short by a full disk is undone, so the retry leaves whole lines."""
    here = Path(__file__).parent
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_DISK_CHILD,
            str(tmp_path),
            str(here),
            str(here.parents[1]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "write failed" in done.stdout
    lines = (tmp_path / "suspicious-powershell.jsonl").read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        r.event_id for r in records(4)
    ]


async def test_hunt_ids_that_differ_only_in_replaced_characters_get_their_own_files(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """``a:b``, ``a;b`` and ``a_b`` write three files; a safe id keeps its name."""
    sink = FileSink("files", folder=tmp_path, per="hunt-day", clock=Clock())
    sent = [
        *records(2, hunt="a:b"),
        *records(2, hunt="a;b"),
        *records(2, hunt="a_b"),
    ]
    async with sink:
        await sink.send(sent)

    hunts_by_file = {
        path.name: {
            json.loads(line)["hunt"]["id"] for line in path.read_text().splitlines()
        }
        for path in tmp_path.iterdir()
    }
    assert hunts_by_file == {
        "a_b-2026-12-03.jsonl": {"a_b"},
        "a_b~6783a31e-2026-12-03.jsonl": {"a:b"},
        "a_b~5719af18-2026-12-03.jsonl": {"a;b"},
    }


async def test_a_hunt_id_shaped_like_a_rotated_file_gets_its_own_file(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Hunt ``a.<stamp>`` never appends to the file hunt ``a`` rotated at that stamp."""
    sink = FileSink(
        "files", folder=tmp_path, rotate_bytes=1500, compress=False, clock=Clock()
    )
    first = records(4, hunt="a")
    other = records(2, hunt="a.20251203T120000Z")
    async with sink:
        await sink.send(first[:2])
        await sink.send(first[2:])  # rotates a.jsonl to a.20251203T120000Z.jsonl
        await sink.send(other)

    hunts_by_file = {
        path.name: {
            json.loads(line)["hunt"]["id"] for line in path.read_text().splitlines()
        }
        for path in tmp_path.iterdir()
    }
    (other_file,) = [
        name for name in hunts_by_file if name.startswith("a.2025") and "~" in name
    ]
    assert hunts_by_file == {
        "a.jsonl": {"a"},
        "a.20251203T120000Z.jsonl": {"a"},
        other_file: {"a.20251203T120000Z"},
    }
