"""The whole daemon killed with SIGKILL while delivering loses no row."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from sink_receivers import WebhookReceiver

BATCH = 25


class ReceiverThread:
    """A slow webhook receiver on its own loop, so the test can block on processes."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver(ssl_context=None, delay=0.2)
        self.loop = asyncio.new_event_loop()
        self.url = ""
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.url = self.loop.run_until_complete(self.receiver.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _run_once(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            "--once",
            "--config",
            str(tmp_path / "config"),
            "--jobs",
            str(tmp_path / "jobs"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_sigkill_during_delivery_then_restart_delivers_every_row(
    tmp_path: Path,
) -> None:
    """kill -9 mid-delivery, restart: every fetched row arrives, repeats stay few."""
    receiver = ReceiverThread()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hunt-runner.yaml").write_text(
        f"""
tenants:
  lab: {{cloud: sandbox}}
sinks:
  hook:
    type: webhook
    url: {receiver.url}
    batch_size: {BATCH}
defaults: {{sinks: [hook]}}
state: {{path: {tmp_path / "state.db"}}}
sandbox: {{days: 0.2, live_arrival: false}}
""",
        encoding="utf-8",
    )
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "processes.yaml").write_text(
        """
name: Every process
lookback: 2h
query: |
  DeviceProcessEvents
  | where Timestamp >= HuntStart and Timestamp < HuntEnd
  | project Timestamp, DeviceId, ReportId, ProcessCommandLine
""",
        encoding="utf-8",
    )
    try:
        first = _run_once(tmp_path)
        deadline = time.monotonic() + 120
        while len(receiver.receiver.accepted_ids) < 3 * BATCH:
            assert first.poll() is None, "finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.kill()
        first.wait(30)
        with sqlite3.connect(tmp_path / "state.db") as db:
            (left,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        assert left > 0, "the kill came after delivery finished"

        second = _run_once(tmp_path)
        assert second.wait(180) == 0
        with sqlite3.connect(tmp_path / "state.db") as db:
            fetched = {
                event_id
                for (event_id,) in db.execute(
                    "SELECT event_id FROM outbox_fingerprints WHERE sink = 'hook'"
                )
            }
            (left,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    finally:
        receiver.stop()

    received = receiver.receiver.accepted_ids
    assert left == 0
    assert len(fetched) > 4 * BATCH
    assert set(received) == fetched
    assert len(received) - len(set(received)) <= 2 * BATCH
