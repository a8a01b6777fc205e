"""A forwarding proxy for tests: HTTP CONNECT tunnels on loopback, counted.

It understands only ``CONNECT host:port``, which is all an HTTPS client sends
to a proxy, and pipes bytes both ways once the tunnel is open. With
``credentials`` it demands ``Proxy-Authorization: Basic ...`` and answers
``407`` to anything else, as a corporate proxy does. With ``answers`` the
first CONNECTs get those status lines instead (``"403 Forbidden"``), or
``"close"``: the connection closed without an answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import Counter
from collections.abc import Sequence
from types import TracebackType


class ConnectProxy:
    """``async with ConnectProxy() as proxy``: ``proxy.url``, ``proxy.connects``."""

    def __init__(
        self,
        credentials: tuple[str, str] | None = None,
        answers: Sequence[str] = (),
    ) -> None:
        self.credentials = credentials
        self.answers = list(answers)
        self.connects: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._tunnel(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tunnel(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if method != "CONNECT":
            writer.write(
                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
            )
            return
        if self.answers:
            answer = self.answers.pop(0)
            self.refused[target] += 1
            if answer != "close":
                writer.write(
                    f"HTTP/1.1 {answer}\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode("latin-1")
                )
                await writer.drain()
            return
        if self.credentials is not None and not self._authorised(headers):
            self.refused[target] += 1
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="tests"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return

        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(
            host.strip("[]"), int(port)
        )
        self.connects[target] += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
            )
        finally:
            upstream_writer.close()

    def _authorised(self, headers: dict[str, str]) -> bool:
        assert self.credentials is not None
        given = headers.get("proxy-authorization", "")
        user, password = self.credentials
        expected = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

        return given == f"Basic {expected}"


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            sink.write_eof()
