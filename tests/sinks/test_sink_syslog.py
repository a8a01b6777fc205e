"""The syslog sink: message formats, truncation, and plain socket receivers."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_record
from sink_receivers import SyslogReceiver
from sink_tls import TlsFiles, make_tls_files

from runner import outbox
from runner.errors import SinkError
from runner.outbox import Outbox
from runner.records import Record
from runner.sinks import Dispatcher, build_sink
from runner.sinks.base import LocalSinkSpec
from runner.sinks.cef import escape_extension, escape_header, format_cef
from runner.sinks.syslog import SyslogFormatter, SyslogSink

FIXED_NOW = 1_764_763_200.5  # 2025-12-03T12:00:00.500Z

RFC5424 = re.compile(
    r"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[hunt-runner@32473 [^]]*\]) (.*)$", re.S
)


def _formatter(**overrides: Any) -> SyslogFormatter:
    settings: dict[str, Any] = {
        "format": "rfc5424",
        "encoding": "json",
        "facility": 16,
        "app_name": "hunt-runner",
        "hostname": "runner-1",
        "max_message_bytes": 2048,
        "clock": lambda: FIXED_NOW,
    }
    settings.update(overrides)

    return SyslogFormatter(**settings)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_rfc5424_message_shape(records: Callable[..., list[Record]]) -> None:
    """An RFC 5424 message has PRI, version, UTC time, names, SD and the JSON record."""
    record = records(1)[0]
    message, cut = _formatter().message(record)

    match = RFC5424.match(message.decode())
    assert match is not None and cut is None
    priority, stamp, host, app, _, msgid, data, body = match.groups()
    assert priority == str(16 * 8 + 2)
    assert stamp == "2025-12-03T12:00:00.500Z"
    assert (host, app, msgid) == ("runner-1", "hunt-runner", "record")
    assert f'event_id="{record.event_id}"' in data
    assert json.loads(body) == record.to_dict()


def test_rfc3164_message_shape(records: Callable[..., list[Record]]) -> None:
    """An RFC 3164 message has PRI, BSD timestamp, host and tag before the body."""
    message, _ = _formatter(format="rfc3164").message(records(1, severity="low")[0])

    assert message.startswith(b"<133>Dec  3 12:00:00 runner-1 hunt-runner: {")


def test_oversize_json_is_cut_marked_and_still_json(
    records: Callable[..., list[Record]],
) -> None:
    """A long row is cut to the limit, marked with the bytes removed, and parses."""
    record = records(1, row={"Blob": "é" * 3000, "DeviceName": 'a"b'})[0]
    message, cut = _formatter(max_message_bytes=1024).message(record)

    assert len(message) <= 1024
    body = json.loads(RFC5424.match(message.decode()).group(8))  # type: ignore[union-attr]
    assert body["truncated"] is True
    assert body["event_id"] == record.event_id
    kept, removed = re.fullmatch(
        r"(.*)…\[truncated (\d+) bytes\]", body["row"], re.S
    ).groups()  # type: ignore[union-attr]
    row = record.to_dict()["row"]
    row_json = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
    assert row_json.startswith(kept.encode())
    assert len(kept.encode()) + int(removed) == len(row_json)
    assert cut is not None and cut.removed_bytes == int(removed)


def test_oversize_cef_ends_with_mark(records: Callable[..., list[Record]]) -> None:
    """A CEF message over the limit ends with the truncation mark."""
    record = records(1, row={"Blob": "x" * 3000})[0]
    message, cut = _formatter(encoding="cef", max_message_bytes=1024).message(record)

    assert len(message) <= 1024
    assert re.search(rb"\xe2\x80\xa6\[truncated \d+ bytes\]$", message)
    assert cut is not None and cut.original_bytes > 3000


def test_cef_escaping(records: Callable[..., list[Record]]) -> None:
    """CEF escapes header pipes and value equals signs, backslashes and newlines."""
    record = records(1, hunt="a|b", row={"DeviceName": "x=y\\z\nw"})[0]
    line = format_cef(record)

    assert line.startswith("CEF:0|hunt-runner|hunt-runner|0.1.0|a\\|b|A\\|B|8|")
    assert "dhost=x\\=y\\\\z\\nw" in line
    assert escape_header("p|q\\") == "p\\|q\\\\"
    assert escape_extension("k=v\r") == "k\\=v\\r"


def test_udp_default_size_depends_on_format() -> None:
    """UDP defaults to 1,024 bytes for RFC 3164 and 2,048 for RFC 5424; TCP to 8,192."""
    sizes = []
    for transport, message_format in [
        ("udp", "rfc3164"),
        ("udp", "rfc5424"),
        ("tcp", "rfc5424"),
    ]:
        sink = build_sink(
            LocalSinkSpec(
                "s",
                "syslog",
                options={"transport": transport, "format": message_format},
            )
        )
        assert isinstance(sink, SyslogSink)
        sizes.append(sink.formatter.max_message_bytes)

    assert sizes == [1024, 2048, 8192]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_plain_receiver_gets_each_record(
    transport: str, tls_files: TlsFiles, records: Callable[..., list[Record]]
) -> None:
    """Each transport delivers one message per record to a plain socket receiver."""
    context = tls_files.server_context() if transport == "tls" else None
    receiver = SyslogReceiver(transport, context)
    port = await receiver.start()
    options = {
        "host": "127.0.0.1",
        "port": port,
        "transport": transport,
        "ca_bundle": str(tls_files.ca_path),
    }
    sink = build_sink(LocalSinkSpec("s", "syslog", options=options))
    sent = records(5)
    async with sink:
        await sink.send(sent)
        messages = await receiver.wait_for(5)
    await receiver.stop()

    ids = [json.loads(m[m.index(b"{") :])["event_id"] for m in messages]
    assert ids == [r.event_id for r in sent]


async def test_tcp_reconnects_after_receiver_drops(
    records: Callable[..., list[Record]],
) -> None:
    """After the receiver closes the connection the next send opens a new one."""
    receiver = SyslogReceiver("tcp")
    port = await receiver.start()
    sink = build_sink(
        LocalSinkSpec("s", "syslog", options={"port": port, "transport": "tcp"})
    )
    async with sink:
        await sink.send(records(1))
        await receiver.wait_for(1)
        receiver.drop_clients()
        await asyncio.sleep(0.05)
        await sink.send(records(1, start=1))
        await receiver.wait_for(2)
    await receiver.stop()

    assert receiver.connections == 2
    assert len(receiver.messages) == 2


async def test_refused_connection_is_retryable(
    records: Callable[..., list[Record]],
) -> None:
    """A receiver that is down gives a retryable SinkError."""
    receiver = SyslogReceiver("tcp")
    port = await receiver.start()
    await receiver.stop()
    sink = build_sink(
        LocalSinkSpec("s", "syslog", options={"port": port, "transport": "tcp"})
    )
    async with sink:
        with pytest.raises(SinkError) as caught:
            await sink.send(records(1))

    assert caught.value.retryable


async def test_send_reports_truncations(records: Callable[..., list[Record]]) -> None:
    """``send`` tells the dispatcher which records it cut."""
    receiver = SyslogReceiver("udp")
    port = await receiver.start()
    sink = build_sink(LocalSinkSpec("s", "syslog", options={"port": port}))
    big = records(1, row={"Blob": "x" * 5000})
    async with sink:
        result = await sink.send(records(2) + big)
        await receiver.wait_for(3)
    await receiver.stop()

    assert result is not None
    assert [cut.event_id for cut in result.truncated] == [big[0].event_id]
    assert max(len(m) for m in receiver.messages) <= 2048


async def test_udp_to_a_closed_port_keeps_the_rows_queued(
    tmp_path: Path, records: Callable[..., list[Record]]
) -> None:
    """Datagrams refused by the receiver's host are not acknowledged; they wait."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = LocalSinkSpec("s", "syslog", options={"port": port, "batch_size": 1})
    sink = build_sink(spec)
    received: list[bytes] = []
    listener: list[asyncio.DatagramTransport] = []

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            received.append(data)

    failures: list[float] = []

    async def sleep(delay: float) -> None:
        failures.append(delay)
        if len(failures) == 6:
            # The receiver comes up on the port the sink was sending to.
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                Collect, local_addr=("127.0.0.1", port)
            )
            listener.append(transport)
        await asyncio.sleep(0.01)

    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    dispatcher = Dispatcher(
        Outbox(path), [(spec, sink)], dead_letter_dir=tmp_path / "dl", sleep=sleep
    )
    sent = records(3)
    dispatcher.enqueue(conn, sent)
    conn.close()
    async with dispatcher:
        assert await dispatcher.drain(timeout=10)
        for _ in range(100):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.01)
    for transport in listener:
        transport.close()

    ids = {json.loads(m[m.index(b"{") :])["event_id"] for m in received}
    assert ids == {r.event_id for r in sent}
    assert len(failures) >= 6


async def test_tcp_send_is_not_done_until_the_receiver_acknowledged_it(
    records: Callable[..., list[Record]],
) -> None:
    """Messages still waiting in our socket buffer do not count as delivered."""
    # A receiver that took the connection but reads nothing, with a tiny
    # window: what the sink writes stays unacknowledged in its send buffer.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sink = build_sink(
        LocalSinkSpec("s", "syslog", options={"port": port, "transport": "tcp"})
    )
    batch = [make_record(n, row={"Blob": "x" * 1000, "n": n}) for n in range(50)]
    try:
        async with sink:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(sink.send(batch), 1.0)
    finally:
        listener.close()


def test_cef_truncation_never_splits_an_escape(
    records: Callable[..., list[Record]],
) -> None:
    """A cut CEF message never ends in half an escape (a lone backslash)."""
    formatter = _formatter(encoding="cef", max_message_bytes=600)
    for pad in range(120):
        row = {"DeviceName": "x" * pad + "\\=|\n" * 200}
        message, cut = formatter.message(records(1, row=row)[0])
        kept = message.decode().rsplit("…[truncated", 1)[0]

        assert cut is not None and len(message) <= 600
        assert (len(kept) - len(kept.rstrip("\\"))) % 2 == 0, pad
