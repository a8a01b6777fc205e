"""The syslog sink: RFC 5424 or RFC 3164 messages over UDP, TCP or TLS.

One record per message, as JSON or CEF. TCP and TLS use octet-counting
framing (RFC 6587, RFC 5425). Each message is held to ``max_message_bytes``
(header included; defaults: UDP 1,024 for RFC 3164 and 2,048 for RFC 5424,
8,192 on TCP and TLS). A longer one is cut and marked, never silently:

* JSON keeps valid JSON: ``row`` becomes a string holding the start of the
  row's JSON followed by ``…[truncated N bytes]``, and ``"truncated":true``
  is added;
* CEF ends with ``…[truncated N bytes]`` (the row is in ``msg``, last).

The sink reports every cut to the dispatcher, which counts and logs it. A
broken connection is dropped and the error is retryable; the dispatcher's
backoff paces the reconnects.

The RFC 5424 formatter is ours: the PyPI formatters are ``logging`` handlers
with blocking sockets, which do not fit an async sink.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import structlog

try:
    import fcntl
    import termios
except ImportError:  # not on Windows
    fcntl = termios = None  # type: ignore[assignment]

from runner import network
from runner.errors import SinkError
from runner.records import Record, json_text
from runner.sinks.base import Options, SendResult, Sink, Truncation, register
from runner.sinks.cef import format_cef

log = structlog.get_logger(__name__)

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}

# Hunt severity to syslog severity (RFC 5424 table 2).
SYSLOG_SEVERITY = {"informational": 6, "low": 5, "medium": 4, "high": 2}

# The structured-data id uses the enterprise number RFC 5612 reserves for
# documentation, as hunt-runner has none of its own.
SD_ID = "hunt-runner@32473"

# Linux: bytes of a TCP socket not yet acknowledged by the peer (SIOCOUTQ),
# and the connection's state.
_TIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if termios else None
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_TCP_ESTABLISHED, _TCP_CLOSE_WAIT = 1, 8

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def truncation_mark(removed: int) -> str:
    return f"…[truncated {removed} bytes]"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or '-'."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]

    return cleaned or "-"


def _cut_utf8(data: bytes, size: int) -> bytes:
    """The longest prefix of *data* within *size* bytes that ends on a character."""
    if size <= 0:
        return b""

    return data[:size].decode("utf-8", errors="ignore").encode("utf-8")


class SyslogFormatter:
    """Builds whole syslog messages (header and body) from records."""

    def __init__(
        self,
        *,
        format: str,
        encoding: str,
        facility: int,
        app_name: str,
        hostname: str,
        max_message_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.format = format
        self.encoding = encoding
        self.facility = facility
        self.app_name = app_name
        self.hostname = hostname
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        # The names are the same in every message; clean them once.
        self._names_5424 = " ".join(
            [
                _printable(hostname, 255),
                _printable(app_name, 48),
                _printable(str(os.getpid()), 128),
                "record",
            ]
        )
        self._tag_3164 = _printable(app_name, 32)

    def header(self, record: Record) -> bytes:
        severity = SYSLOG_SEVERITY.get(record.severity.lower(), 5)
        priority = self.facility * 8 + severity
        moment = datetime.fromtimestamp(self._clock(), UTC)
        if self.format == "rfc3164":
            stamp = f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"
            tag = self._tag_3164
            return f"<{priority}>{stamp} {self.hostname} {tag}: ".encode()
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = (
            f'[{SD_ID} event_id="{_sd_escape(record.event_id)}" '
            f'hunt="{_sd_escape(record.hunt_id)}" '
            f'tenant="{_sd_escape(record.tenant)}"]'
        )
        return f"<{priority}>1 {stamp} {self._names_5424} {data} ".encode()

    def body(self, record: Record) -> bytes:
        if self.encoding == "cef":
            return format_cef(record).encode()

        return record.to_json().encode()

    def message(self, record: Record) -> tuple[bytes, Truncation | None]:
        """The message for *record*, cut to the size limit, and what was cut."""
        header = self.header(record)
        body = self.body(record)
        if len(header) + len(body) <= self.max_message_bytes:
            return header + body, None

        room = self.max_message_bytes - len(header)
        shortened = None
        if self.encoding == "json":
            shortened = _shorten_json(record, room)
        if shortened is None:
            shortened = _shorten_text(body, room)
        cut_body, removed = shortened
        cut = Truncation(record.event_id, len(header) + len(body), removed)

        return header + cut_body, cut


def _shorten_json(record: Record, room: int) -> tuple[bytes, int] | None:
    """Valid JSON with the row cut; None when the envelope alone is too big."""
    data: dict[str, Any] = record.to_dict()
    row = json_text(data["row"]).encode()
    data["truncated"] = True
    keep = len(row)
    # Escaping a cut row inside a string grows it by an amount known only
    # after encoding, so shrink by the measured excess until it fits.
    for _ in range(20):
        kept = _cut_utf8(row, keep)
        removed = len(row) - len(kept)
        data["row"] = kept.decode() + truncation_mark(removed)
        encoded = json_text(data).encode()
        excess = len(encoded) - room
        if excess <= 0:
            return encoded, removed
        if keep == 0:
            return None
        keep = max(0, keep - excess)

    return None


def _shorten_text(body: bytes, room: int) -> tuple[bytes, int]:
    """The body cut to *room* bytes, ending with the mark naming what went."""
    removed = len(body)
    for _ in range(3):
        mark = truncation_mark(removed).encode()
        kept = _cut_utf8(body, room - len(mark))
        if (len(kept) - len(kept.rstrip(b"\\"))) % 2:
            # Half of a CEF escape (``\\=``, ``\\\\``, ``\\n``): drop it too.
            kept = kept[:-1]
        removed = len(body) - len(kept)
        if len(kept) + len(truncation_mark(removed).encode()) <= room:
            break

    return kept + truncation_mark(removed).encode(), removed


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        # An ICMP port-unreachable for an earlier datagram: the receiver is
        # down, so the next send fails and the batch is retried.
        self.error = exc


@register
class SyslogSink(Sink):
    """Sends each record as one syslog message."""

    type_name = "syslog"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int,
        transport: str = "udp",
        formatter: SyslogFormatter,
        ca_bundle: str | None = None,
        ca_mode: str = "add",
        verify_tls: bool = True,
    ) -> None:
        super().__init__(name)
        self.host = host
        self.port = port
        self.transport = transport
        self.formatter = formatter
        self._ssl: ssl.SSLContext | None = None
        if transport == "tls":
            if not verify_tls:
                log.warning("sink.tls_unverified", sink=name, host=host)
            self._ssl = network.tls_context(ca_bundle, ca_mode, verify_tls)
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._datagram: asyncio.DatagramTransport | None = None
        self._datagram_protocol: _Datagrams | None = None

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        host = options.string("host", "127.0.0.1")
        transport = options.choice("transport", ("udp", "tcp", "tls"), "udp")
        port = options.integer("port", 6514 if transport == "tls" else 514)
        message_format = options.choice("format", ("rfc5424", "rfc3164"), "rfc5424")
        encoding = options.choice("encoding", ("json", "cef"), "json")
        facility = options.choice("facility", tuple(FACILITIES), "local0")
        app_name = options.string("app_name", "hunt-runner")
        if transport == "udp":
            default_size = 1024 if message_format == "rfc3164" else 2048
        else:
            default_size = 8192
        max_bytes = options.integer("max_message_bytes", default_size, minimum=480)
        if transport == "udp" and max_bytes > 65507:
            options.problems.append("max_message_bytes: a UDP datagram holds 65507")
        ca_bundle = options.string("ca_bundle")
        ca_mode = options.choice("ca_mode", network.CA_MODES, "add")
        verify_tls = options.boolean("verify_tls", True)
        hostname = options.string("hostname", socket.gethostname())
        options.finish()
        assert host is not None and app_name is not None and hostname is not None
        formatter = SyslogFormatter(
            format=message_format,
            encoding=encoding,
            facility=FACILITIES[facility],
            app_name=app_name,
            hostname=hostname,
            max_message_bytes=max_bytes,
        )

        return cls(
            name,
            host=host,
            port=port,
            transport=transport,
            formatter=formatter,
            ca_bundle=ca_bundle,
            ca_mode=ca_mode,
            verify_tls=verify_tls,
        )

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        messages: list[bytes] = []
        cuts: list[Truncation] = []
        for record in batch:
            message, cut = self.formatter.message(record)
            messages.append(message)
            if cut is not None:
                cuts.append(cut)
        try:
            if self.transport == "udp":
                await self._send_datagrams(messages)
            else:
                await self._send_stream(messages)
        except asyncio.CancelledError:
            # Timed out mid-write: the stream may hold half a frame, so the
            # retry must start on a fresh connection.
            self._abandon_connection()
            raise
        except (OSError, ssl.SSLError, TimeoutError) as error:
            await self._drop_connection()
            raise SinkError(
                self.name, f"{self.transport} send failed: {error!r}"
            ) from error

        return SendResult(truncated=tuple(cuts))

    async def _send_datagrams(self, messages: list[bytes]) -> None:
        if self._datagram is None or self._datagram.is_closing():
            loop = asyncio.get_running_loop()
            (
                self._datagram,
                self._datagram_protocol,
            ) = await loop.create_datagram_endpoint(
                _Datagrams, remote_addr=(self.host, self.port)
            )
        self._raise_datagram_error()
        for message in messages:
            self._datagram.sendto(message)
        # A closed port answers with an ICMP port-unreachable: at once on
        # loopback, within a round trip on a LAN. Look for it before the batch
        # counts as sent; otherwise every batch would vanish "delivered".
        await asyncio.sleep(0)
        self._raise_datagram_error()

    def _raise_datagram_error(self) -> None:
        """Raise the error an earlier datagram of this socket came back with."""
        error: Exception | None = None
        protocol = self._datagram_protocol
        if protocol is not None and protocol.error is not None:
            error, protocol.error = protocol.error, None
        sock = self._datagram.get_extra_info("socket") if self._datagram else None
        if error is None and sock is not None:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                error = OSError(code, os.strerror(code))
        if error is not None:
            raise error if isinstance(error, OSError) else OSError(str(error))

    async def _send_stream(self, messages: list[bytes]) -> None:
        reader, writer = self._reader, self._writer
        if writer is None or writer.is_closing() or (reader and reader.at_eof()):
            await self._drop_connection()
            reader, writer = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
            self._reader, self._writer = reader, writer
        writer.write(b"".join(b"%d %s" % (len(m), m) for m in messages))
        await writer.drain()
        await self._acknowledged(writer)

    async def _acknowledged(self, writer: asyncio.StreamWriter) -> None:
        """Return once the receiver's TCP stack has acknowledged every byte.

        ``drain`` returns as soon as the bytes are in our kernel's send
        buffer, which holds hundreds of kilobytes: a receiver that hangs, a
        host that died or a network cut would otherwise "take" thousands of
        records that are then lost. Syslog has no acknowledgements of its own,
        so messages a receiver took into its socket and never read (it closed
        or restarted) can still be lost; only RELP would close that gap.
        """
        sock = writer.get_extra_info("socket")
        if sock is None or _TIOCOUTQ is None:
            return
        pause = 0.0005
        while True:
            reader = self._reader
            if writer.transport.is_closing() or (
                reader is not None and reader.exception() is not None
            ):
                raise ConnectionResetError("the receiver dropped the connection")
            (unacknowledged,) = struct.unpack(
                "i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0")
            )
            # Bytes can also wait in the transport's own buffer (and, on TLS,
            # in the SSL layer's) before they reach the socket.
            if unacknowledged == 0 and writer.transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
        # A reset empties the queue too: only a live connection acknowledged.
        if _TCP_INFO is not None:
            state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)[0]
            if state not in (_TCP_ESTABLISHED, _TCP_CLOSE_WAIT):
                raise ConnectionResetError("the receiver dropped the connection")

    def _abandon_connection(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._writer, self._reader = None, None

    async def _drop_connection(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
        if self._datagram is not None:
            self._datagram.close()
            self._datagram = None

    async def aclose(self) -> None:
        await self._drop_connection()
