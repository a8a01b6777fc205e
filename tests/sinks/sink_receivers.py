"""Real loopback receivers for the sink tests: an HTTPS webhook endpoint."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# Decides the answer to one request from its decoded documents; None means 200.
Policy = Callable[[list[dict[str, Any]], "WebhookReceiver"], web.Response | None]


@dataclass
class Request:
    headers: dict[str, str]
    raw: bytes
    body: bytes
    documents: list[dict[str, Any]]


@dataclass
class WebhookReceiver:
    """An aiohttp server on 127.0.0.1 that keeps every request it accepted."""

    ssl_context: ssl.SSLContext | None
    policy: Policy | None = None
    delay: float = 0.0
    requests: list[Request] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)
    calls: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self, path: str = "/hook") -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(path, self._handle)
        app.router.add_post("/_bulk", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if self.ssl_context else "http"
        self.url = f"{scheme}://localhost:{port}{path}"

        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        # aiohttp decompresses gzip bodies itself; older versions did not.
        raw = await request.read()
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        documents = _decode(body, request.headers.get("Content-Type", ""))
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.policy(documents, self) if self.policy else None
        if answer is not None:
            return answer
        self.requests.append(Request(dict(request.headers), raw, body, documents))
        for document in documents:
            if "event_id" in document:
                self.accepted_ids.append(document["event_id"])
            elif "event" in document:
                self.accepted_ids.append(document["event"]["event_id"])

        return web.json_response({"ok": True})


def _decode(body: bytes, content_type: str) -> list[dict[str, Any]]:
    text = body.decode()
    if content_type.startswith("application/json"):
        if text.startswith("["):
            return json.loads(text)
        # Splunk HEC: concatenated JSON objects without separators.
        decoder = json.JSONDecoder()
        documents, index = [], 0
        while index < len(text):
            document, index = decoder.raw_decode(text, index)
            documents.append(document)
        return documents

    return [json.loads(line) for line in text.splitlines() if line]


class SyslogReceiver:
    """Plain loopback syslog receivers: UDP datagrams or octet-counted TCP/TLS."""

    def __init__(self, transport: str, ssl_context: ssl.SSLContext | None = None):
        self.transport = transport
        self.ssl_context = ssl_context
        self.messages: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._datagrams: asyncio.DatagramTransport | None = None
        self._arrived = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            receiver = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    receiver._add(data)

            self._datagrams, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0)
            )
            self.port = self._datagrams.get_extra_info("sockname")[1]
        else:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", 0, ssl=self.ssl_context
            )
            self.port = self._server.sockets[0].getsockname()[1]

        return self.port

    def _add(self, message: bytes) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                self._add(await reader.readexactly(int(length[:-1])))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < count:
            self._arrived.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break

        return self.messages

    def drop_clients(self) -> None:
        """Close every client connection, as a restarting receiver would."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def stop(self) -> None:
        self.drop_clients()
        if self._datagrams is not None:
            self._datagrams.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
