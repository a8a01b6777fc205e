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
    _create_private(path)
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=30
    )
    connection.execute("PRAGMA journal_mode=WAL")

    return connection


def _create_private(path: Path) -> None:
    """Create the file at *path* 0600, or narrow it to 0600 if others can read it.

    An existing file is never opened here: closing any descriptor of a file
    drops every POSIX lock the process holds on it, and SQLite's locks are
    POSIX locks. A second connection of the daemon (the outbox's) would
    otherwise release the first one's, and the next process to close the file
    (``status``, ``health``) would take itself for the last user, checkpoint
    and delete the write-ahead log the daemon goes on writing to.
    """
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(PRIVATE_FILE)
    else:
        os.close(descriptor)
