"""Opening the SQLite state file so that only the daemon's user can read it.

The state file holds every fetched row until each sink has it (the outbox),
so it is as sensitive as the results: its folder is created 0700, the file
0600 (SQLite gives its ``-wal`` and ``-shm`` files the file's mode), and a
file found readable by others is narrowed to 0600, with the ``-wal`` and
``-shm`` files an older version or a crash left beside it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
# The files SQLite keeps beside the state file; the log holds recent rows.
COMPANIONS = ("-wal", "-shm", "-journal")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the state file at *path*, in WAL mode, created private.

    Raises ``OSError`` when the folder or file cannot be made and
    ``sqlite3.Error`` when the file is no database.
    """
    path.parent.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
    # A symbolic link is followed, as SQLite follows it: its companions are
    # kept beside the file the link points to.
    real = Path(os.path.realpath(path))
    _create_private(real)
    for suffix in COMPANIONS:
        _narrow(real.with_name(real.name + suffix))
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
        _narrow(path)
    else:
        os.close(descriptor)


def _narrow(path: Path) -> None:
    """Make the file at *path*, if there is one, 0600 when others can read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o077:
        path.chmod(PRIVATE_FILE)
