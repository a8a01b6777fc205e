"""Delivery throughput of each sink, with a naive baseline, printed as JSON.

    .venv/bin/python benchmarks/sinks.py [--rows 100000] [--naive-rows 5000]

Each case runs in its own process so that its peak memory (``ru_maxrss``) is
its own; receivers (HTTP, syslog) run in another process so that they do not
share the sender's event loop. ``batched`` sends batches of 500 through the
sink, the way the dispatcher does; ``naive`` sends one record per call, the
way a sink without batching would. ``outbox`` measures the whole path: enqueue
into SQLite in one transaction, then drain through the dispatcher to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.logs import configure as configure_logs  # noqa: E402
from runner.outbox import Outbox, create_schema  # noqa: E402
from runner.records import Record, event_id  # noqa: E402
from runner.sinks import Dispatcher, Sink, build_sink  # noqa: E402
from runner.sinks.base import LocalSinkSpec  # noqa: E402

BATCH = 500
CASES = [
    "file-jsonl",
    "file-csv",
    "stdout",
    "webhook",
    "syslog-udp",
    "syslog-tcp",
    "syslog-tls",
]


def _tls_dir() -> Path:
    """Where the TLS case keeps its throwaway CA and server certificate.

    The parent process makes the folder and names it in the environment its
    receiver and child processes inherit.
    """
    return Path(os.environ["BENCH_TLS_DIR"])


def make_records(count: int) -> list[Record]:
    """Rows shaped like DeviceProcessEvents results (about 600 bytes as JSON)."""
    end = datetime(2026, 12, 3, 12, tzinfo=UTC)
    records = []
    for number in range(count):
        row = {
            "Timestamp": "2026-12-03T11:59:00Z",
            "DeviceId": f"{number:040x}",
            "DeviceName": f"host-{number % 500}.contoso.com",
            "AccountName": f"user{number % 97}",
            "FileName": "powershell.exe",
            "FolderPath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
            "ProcessCommandLine": f"powershell.exe -NoProfile -enc {number:x}",
            "InitiatingProcessFileName": "cmd.exe",
            "ReportId": number,
        }
        records.append(
            Record(
                event_id=event_id("bench", "contoso", row),
                hunt_id="bench",
                hunt_name="Benchmark hunt",
                severity="medium",
                tenant="contoso",
                window_start=end - timedelta(hours=1),
                window_end=end,
                run_id="run-bench",
                row=row,
                tags=("bench",),
            )
        )

    return records


# Receivers, each in its own process ------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http_receiver(port: int, ready: Any) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async def main() -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _syslog_receiver(port: int, transport: str, ready: Any, counter: Any) -> None:
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
            server.bind(("127.0.0.1", port))
            ready.set()
            while True:
                server.recv(65536)
                counter.value += 1
    tls = None
    if transport == "tls":
        from runner.sandbox.certs import make_server_certificates

        tls = make_server_certificates(_tls_dir()).server_context()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        ready.set()
        while True:
            connection, _ = server.accept()
            if tls is not None:
                connection = tls.wrap_socket(connection, server_side=True)
            buffer = b""
            with connection:
                while chunk := connection.recv(1 << 20):
                    buffer += chunk
                    position = 0
                    while (space := buffer.find(b" ", position)) >= 0:
                        end = space + 1 + int(buffer[position:space])
                        if end > len(buffer):
                            break
                        position = end
                        counter.value += 1
                    buffer = buffer[position:]


# One case, in a child process ------------------------------------------------


def _sink_for(case: str, folder: Path, port: int) -> Sink:
    options: dict[str, Any]
    if case.startswith("file-"):
        options = {"path": str(folder), "format": case.split("-")[1], "fsync": True}
        return build_sink(LocalSinkSpec(case, "file", options=options))
    if case == "stdout":
        return build_sink(LocalSinkSpec(case, "stdout"))
    if case == "webhook":
        options = {"url": f"http://127.0.0.1:{port}/hook", "format": "ndjson"}
        return build_sink(LocalSinkSpec(case, "webhook", options=options))
    transport = case.split("-")[1]
    options = {"port": port, "transport": transport, "max_message_bytes": 4096}
    if transport == "tls":
        options["ca_bundle"] = str(_tls_dir() / "sandbox-ca.pem")
    return build_sink(LocalSinkSpec(case, "syslog", options=options))


async def _time_sends(sink: Sink, records: list[Record], batch: int) -> float:
    started = time.perf_counter()
    async with sink:
        for start in range(0, len(records), batch):
            await sink.send(records[start : start + batch])

    return time.perf_counter() - started


def run_case(case: str, mode: str, rows: int, port: int) -> dict[str, Any]:
    records = make_records(rows)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        if mode == "outbox":
            seconds, enqueue_seconds = asyncio.run(_outbox_case(Path(folder), records))
            extra = {"enqueue_rows_per_s": round(rows / enqueue_seconds)}
        else:
            sink = _sink_for(case, Path(folder), port)
            batch = BATCH if mode == "batched" else 1
            seconds = asyncio.run(_time_sends(sink, records, batch))
            extra = {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    return {
        "case": case,
        "mode": mode,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_send_mb": round(rss_before / 1024, 1),
        **extra,
    }


async def _outbox_case(folder: Path, records: list[Record]) -> tuple[float, float]:
    path = folder / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    create_schema(conn)
    spec = LocalSinkSpec("file", "file", options={"path": str(folder / "out")})
    dispatcher = Dispatcher(
        Outbox(path, capacity=len(records) + 1),
        [(spec, build_sink(spec))],
        dead_letter_dir=folder / "dead-letter",
    )
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    dispatcher.enqueue(conn, records)
    conn.execute("COMMIT")
    enqueue_seconds = time.perf_counter() - started
    started = time.perf_counter()
    async with dispatcher:
        await dispatcher.drain()

    return time.perf_counter() - started, enqueue_seconds


# The driver ------------------------------------------------------------------


def _child(case: str, mode: str, rows: int, port: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        case,
        "--mode",
        mode,
        "--rows",
        str(rows),
        "--port",
        str(port),
    ]
    # The stdout case writes its records to /dev/null; the result comes on fd 3.
    read_end, write_end = os.pipe()
    stdout = subprocess.DEVNULL
    subprocess.run(
        command,
        stdout=stdout,
        check=True,
        pass_fds=(write_end,),
        env={**os.environ, "BENCH_RESULT_FD": str(write_end)},
    )
    os.close(write_end)
    with os.fdopen(read_end) as result:
        return json.loads(result.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    parser.add_argument("--child")
    parser.add_argument("--mode", default="batched")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()

    if args.child:
        configure_logs("warning", stream=sys.stderr, json=True)
        result = run_case(args.child, args.mode, args.rows, args.port)
        with os.fdopen(int(os.environ["BENCH_RESULT_FD"]), "w") as out:
            out.write(json.dumps(result))
        return

    results = []
    os.environ["BENCH_TLS_DIR"] = tempfile.mkdtemp(prefix="hunt-runner-bench-tls-")
    context = multiprocessing.get_context("spawn")
    for case in args.cases.split(","):
        port, receiver, counter = 0, None, None
        if case == "webhook" or case.startswith("syslog"):
            kind = socket.SOCK_DGRAM if case == "syslog-udp" else socket.SOCK_STREAM
            port = _free_port(kind)
            ready = context.Event()
            counter = context.Value("q", 0)
            if case == "webhook":
                target, receiver_args = _http_receiver, (port, ready)
            else:
                transport = case.split("-")[1]
                target, receiver_args = (
                    _syslog_receiver,
                    (port, transport, ready, counter),
                )
            receiver = context.Process(target=target, args=receiver_args, daemon=True)
            receiver.start()
            ready.wait(20)
        for mode, rows in (("batched", args.rows), ("naive", args.naive_rows)):
            if counter is not None:
                counter.value = 0
            result = _child(case, mode, rows, port)
            if case.startswith("syslog"):
                time.sleep(0.3)
                result["received"] = counter.value if counter else None
            results.append(result)
        if receiver is not None:
            receiver.terminate()
            receiver.join()
    if "file-jsonl" in args.cases:
        results.append(_child("file-jsonl", "outbox", args.rows, 0))

    shutil.rmtree(_tls_dir(), ignore_errors=True)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
