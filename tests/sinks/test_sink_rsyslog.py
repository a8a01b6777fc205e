"""The syslog sink against a real rsyslogd on loopback: UDP, TCP and TLS."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sink_tls import TlsFiles, make_tls_files

from runner.records import Record
from runner.sinks import build_sink
from runner.sinks.base import LocalSinkSpec

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None
)

pytestmark = pytest.mark.skipif(
    RSYSLOGD is None,
    reason="rsyslogd is not installed (.ci/install-deps.sh installs rsyslog)",
)

CONFIG = """
global(
    workDirectory="{folder}"
    maxMessageSize="64k"
    defaultNetstreamDriverCAFile="{tls.ca_path}"
    defaultNetstreamDriverCertFile="{tls.cert_path}"
    defaultNetstreamDriverKeyFile="{tls.key_path}"
)
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imtcp" address="127.0.0.1" port="{tls_port}"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{folder}/messages.log" template="raw")
"""


@dataclass
class Rsyslog:
    folder: Path
    udp: int
    tcp: int
    tls_port: int
    tls: TlsFiles

    def lines(self) -> list[str]:
        path = self.folder / "messages.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    async def wait_for(self, needles: list[str], timeout: float = 10.0) -> list[str]:
        """The log lines holding each needle, in order, once all have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            found = [next((ln for ln in lines if n in ln), None) for n in needles]
            if all(found) or time.monotonic() > deadline:
                return [line or "" for line in found]
            await asyncio.sleep(0.02)


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    folder = tmp_path_factory.mktemp("rsyslog")
    server = Rsyslog(
        folder,
        _free_port(socket.SOCK_DGRAM),
        _free_port(socket.SOCK_STREAM),
        _free_port(socket.SOCK_STREAM),
        make_tls_files(folder / "tls"),
    )
    config = folder / "rsyslog.conf"
    config.write_text(CONFIG.format(**server.__dict__))
    process = subprocess.Popen(
        [RSYSLOGD or "rsyslogd", "-n", "-f", str(config), "-i", str(folder / "pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", server.tls_port), 0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                process.kill()
                pytest.fail(f"rsyslogd did not start: {output}")
            time.sleep(0.02)
    yield server
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()


def _sink(rsyslog: Rsyslog, transport: str, **options: object):  # type: ignore[no-untyped-def]
    port = {"udp": rsyslog.udp, "tcp": rsyslog.tcp, "tls": rsyslog.tls_port}
    settings = {
        "host": "127.0.0.1",
        "port": port[transport],
        "transport": transport,
        "ca_bundle": str(rsyslog.tls.ca_path),
        **options,
    }
    return build_sink(LocalSinkSpec(f"rsyslog-{transport}", "syslog", options=settings))


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("message_format", ["rfc5424", "rfc3164"])
async def test_rsyslog_receives_every_record(
    rsyslog: Rsyslog,
    transport: str,
    message_format: str,
    records: Callable[..., list[Record]],
) -> None:
    """rsyslog receives each record as one message over UDP, TCP and TLS."""
    sent = records(20, hunt=f"hunt-{transport}-{message_format}")
    sink = _sink(rsyslog, transport, format=message_format)
    async with sink:
        await sink.send(sent)
        lines = await rsyslog.wait_for([r.event_id for r in sent])

    assert all(lines), f"missing {lines.count('')} of 20 messages"
    for line, record in zip(lines, sent, strict=True):
        assert json.loads(line[line.index("{") :])["event_id"] == record.event_id


async def test_rsyslog_cef_over_tls(
    rsyslog: Rsyslog, records: Callable[..., list[Record]]
) -> None:
    """A CEF message arrives with its header and external id intact."""
    record = records(1, hunt="hunt-cef")[0]
    sink = _sink(rsyslog, "tls", encoding="cef")
    async with sink:
        await sink.send([record])
        (line,) = await rsyslog.wait_for([record.event_id])

    assert "CEF:0|hunt-runner|hunt-runner|0.1.0|hunt-cef|Hunt Cef|8|" in line
    assert f"externalId={record.event_id}" in line


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_rsyslog_oversize_row_arrives_truncated_with_mark(
    rsyslog: Rsyslog, transport: str, records: Callable[..., list[Record]]
) -> None:
    """An oversize row arrives cut to the limit, marked, and still valid JSON."""
    record = records(1, hunt=f"hunt-big-{transport}", row={"Blob": "z" * 20_000})[0]
    sink = _sink(rsyslog, transport, max_message_bytes=2048)
    async with sink:
        result = await sink.send([record])
        (line,) = await rsyslog.wait_for([record.event_id])

    assert line, "the oversize message never arrived"
    assert len(line.encode()) <= 2048
    body = json.loads(line[line.index("{") :])
    assert body["truncated"] is True
    assert re.search(r"…\[truncated \d+ bytes\]$", body["row"])
    assert result is not None and len(result.truncated) == 1
