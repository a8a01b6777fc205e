"""A delivery process for the kill -9 test: enqueue rows, deliver them, exit.

Usage: python deliver_child.py STATE_DB URL CA_FILE ROWS
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]

from conftest import make_record  # noqa: E402

from runner.outbox import Outbox  # noqa: E402
from runner.sinks import Dispatcher, build_sink  # noqa: E402
from runner.sinks.base import LocalSinkSpec  # noqa: E402


async def main(state: Path, url: str, ca_file: str, rows: int) -> None:
    spec = LocalSinkSpec(
        "hook", "webhook", options={"url": url, "ca_bundle": ca_file, "batch_size": 20}
    )
    conn = sqlite3.connect(state, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    box = Outbox(state)
    dispatcher = Dispatcher(
        box, [(spec, build_sink(spec))], dead_letter_dir=state.parent / "dead-letter"
    )
    # Enqueueing again after a restart adds nothing: the fingerprints remember.
    conn.execute("BEGIN IMMEDIATE")
    dispatcher.enqueue(conn, [make_record(n) for n in range(rows)])
    conn.execute("COMMIT")
    async with dispatcher:
        await dispatcher.drain()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])))
