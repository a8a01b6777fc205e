"""The state file holds fetched rows: only the daemon's user may read it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from runner.outbox import Outbox
from runner.state import State


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_file_and_its_folder_are_private(tmp_path: Path) -> None:
    """A new state folder is 0700; the file and its WAL companions are 0600."""
    path = tmp_path / "state" / "hunt-runner.db"
    old_umask = os.umask(0o022)
    try:
        state = State(path)
        outbox = Outbox(path)
        state.put_tenant_status("lab", {"tenant": "lab"})
    finally:
        os.umask(old_umask)

    companions = [
        path,
        path.with_name(path.name + "-wal"),
        path.with_name(path.name + "-shm"),
    ]
    assert _mode(path.parent) == 0o700
    assert {p.name: _mode(p) for p in companions if p.exists()} == {
        p.name: 0o600 for p in companions
    }
    outbox.close()
    state.close()


def test_a_state_file_readable_by_others_is_narrowed(tmp_path: Path) -> None:
    """An existing state file that others can read is made 0600 when opened."""
    path = tmp_path / "hunt-runner.db"
    State(path).close()
    path.chmod(0o644)

    State(path).close()

    assert _mode(path) == 0o600


def test_a_status_read_from_another_process_leaves_the_daemons_log_alone(
    tmp_path: Path,
) -> None:
    """`status` beside the daemon keeps its write-ahead log and sees its writes."""
    config = tmp_path / "config"
    config.mkdir()
    path = tmp_path / "state" / "hunt-runner.db"
    (config / "hunt-runner.yaml").write_text(
        f"tenants:\n  lab: {{cloud: sandbox}}\nstate: {{path: {path}}}\n",
        encoding="utf-8",
    )
    # The daemon's two connections, opened as Runtime opens them.
    state = State(path)
    outbox = Outbox(path)
    state.put_tenant_status("lab", {"tenant": "lab", "queue_depth": 1})

    def status() -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "runner.cli", "status", "--json"],
            env={**os.environ, "HUNT_RUNNER_CONFIG": str(config)},
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)["tenants"]["lab"]  # type: ignore[no-any-return]

    assert status()["queue_depth"] == 1
    state.put_tenant_status("lab", {"tenant": "lab", "queue_depth": 2})

    assert path.with_name(path.name + "-wal").exists()
    assert status()["queue_depth"] == 2
    outbox.close()
    state.close()


def test_write_ahead_log_left_readable_by_a_crash_is_narrowed(tmp_path: Path) -> None:
    """A -wal or -shm file left readable by others by a crash is made 0600."""
    path = tmp_path / "hunt-runner.db"
    # An older version's daemon, killed while it held the file in WAL mode.
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys\n"
            "os.umask(0o022)\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA journal_mode=WAL')\n"
            "c.execute('CREATE TABLE rows (row TEXT)')\n"
            "c.execute(\"INSERT INTO rows VALUES ('fetched row')\")\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
    writer.kill()
    writer.wait()
    companions = [path.with_name(path.name + s) for s in ("", "-wal", "-shm")]
    assert {_mode(p) for p in companions} == {0o644}

    state = State(path)

    assert {p.name: _mode(p) for p in companions} == {p.name: 0o600 for p in companions}
    state.close()
