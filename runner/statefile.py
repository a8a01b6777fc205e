"""Opening the SQLite state file so that only the daemon's user can read it.

The state file holds every fetched row until each sink has it (the outbox),
so it is as sensitive as the results: its folder is created 0700, the file
0600 (SQLite gives its ``-wal`` and ``-shm`` files the file's mode), and a
file found readable by others is narrowed to 0600.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the state file at *path*, in WAL mode, created private.

    Raises ``OSError`` when the folder or file cannot be made and
    ``sqlite3.Error`` when the file is no database.
    """
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_IMODE(mode) & 0o077:
            os.fchmod(descriptor, PRIVATE_FILE)
    finally:
        os.close(descriptor)
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=30
    )
    connection.execute("PRAGMA journal_mode=WAL")

    return connection
