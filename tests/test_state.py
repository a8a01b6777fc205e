"""The state file: a commit that fails leaves nothing half done behind."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner.errors import StateError
from runner.records import Record, event_id
from runner.state import RunRecord, State, exclusive, in_use

END = datetime(2026, 12, 3, 12, tzinfo=UTC)


def _record(row: dict[str, object]) -> Record:
    return Record(
        event_id=event_id("hunt-a", "lab", {"n": 1}),
        hunt_id="hunt-a",
        hunt_name="Hunt A",
        severity="high",
        tenant="lab",
        window_start=END - timedelta(hours=1),
        window_end=END,
        run_id="run-1",
        row=row,
    )


def _run(run_id: str, end: datetime) -> RunRecord:
    return RunRecord(
        run_id, "hunt-a", "lab", END - timedelta(hours=1), end, "ok", 1, 1, 0.1, 0.2
    )


def test_a_commit_that_raises_rolls_back_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    """A non-database error inside the commit rolls it back; the state stays usable."""
    state = State(tmp_path / "state.db")
    unserialisable = _record({"when": object()})

    with pytest.raises(TypeError):
        state.commit_run(_run("run-1", END), [unserialisable], ["files"])
    assert state.watermark("hunt-a", "lab") is None

    state.commit_run(_run("run-2", END), [_record({"n": 1})], ["files"])
    assert state.watermark("hunt-a", "lab") == END
    state.close()


def test_a_health_probe_checking_the_lock_does_not_stop_a_daemon_starting(
    tmp_path: Path,
) -> None:
    """A daemon starting while health checks probe the state file still gets it."""
    path = tmp_path / "state.db"
    with exclusive(path):
        pass
    # What `hunt-runner health` asks, as often as the machine allows.
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom runner.state import in_use\n"
            "print('probing', flush=True)\n"
            "while True:\n    in_use(sys.argv[1])\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert probe.stdout is not None and probe.stdout.readline()
        for _ in range(300):
            with exclusive(path):
                pass
    finally:
        probe.kill()
        probe.wait()


def test_a_state_file_reached_through_a_link_is_held_as_the_same_file(
    tmp_path: Path,
) -> None:
    """A daemon naming the state file through a symbolic link meets the other's lock."""
    path = tmp_path / "data" / "state.db"
    path.parent.mkdir()
    link = tmp_path / "state.db"
    link.symlink_to(path)

    with exclusive(path):
        with pytest.raises(StateError, match="in use by another hunt-runner"):
            with exclusive(link):
                pass
        assert in_use(link)
