"""The webhook sink: HTTPS POST of record batches, with presets for SIEMs.

Bodies are a JSON array or NDJSON, or the Splunk HTTP Event Collector and
Elasticsearch bulk shapes (``preset``). A batch is cut into requests by count
(``batch_size``, read by the dispatcher) and by encoded size
(``batch_bytes``). When ``hmac_secret_env`` or ``hmac_secret_file`` is set,
each request carries ``X-Hunt-Runner-Signature: t=<unix>,v1=<hex>``, the
HMAC-SHA256 of ``"<t>.<body>"`` over the body before gzip, so a receiver
whose framework decompresses transparently can still verify it.

``token`` (``{env: NAME}`` or ``{file: PATH}``) becomes ``Authorization:
Splunk <token>`` with the HEC preset and ``Authorization: ApiKey <token>``
otherwise; other ``headers`` values may be given the same way.

Answers: 2xx delivered; 413 and 400 split the request in halves and send
each (a single record still too big, or still refused, is rejected for good
with the receiver's message); 429 asks the dispatcher to
wait ``Retry-After``; 5xx, 401, 403, 404, 407, 408, redirects (never
followed) and network errors are retryable; other statuses reject the
records of that request, and the batch's other requests are still sent.
When the dispatcher retries a batch, the records an earlier attempt got
accepted or rejected for good are not posted again.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import structlog

from runner import __version__, network
from runner.errors import SinkError
from runner.limiter.retry_after import parse_retry_after
from runner.records import Record, json_text
from runner.secrets import Secret
from runner.sinks.base import (
    Options,
    RecordsRejected,
    SendResult,
    Sink,
    SinkThrottled,
    register,
)

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Hunt-Runner-Signature"


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for *body* sent at *timestamp*."""
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)

    return f"t={timestamp},v1={digest.hexdigest()}"


def _dumps(value: Any) -> str:
    return json_text(value)


@register
class WebhookSink(Sink):
    """POSTs batches of records to an HTTPS endpoint."""

    type_name = "webhook"

    def __init__(
        self,
        name: str,
        *,
        url: str,
        format: str = "json-array",
        preset: str | None = None,
        batch_bytes: int = 1_000_000,
        gzip: bool = False,
        headers: Mapping[str, str | Secret] | None = None,
        hmac_secret: Secret | None = None,
        ca_bundle: str | None = None,
        ca_mode: str = "add",
        verify_tls: bool = True,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        proxy: network.ProxySettings | None = None,
        index: str = "hunt-runner",
        sourcetype: str = "hunt-runner:record",
        host: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        self.url = url
        self.format = format
        self.preset = preset
        self.batch_bytes = batch_bytes
        self.gzip = gzip
        self.headers = dict(headers or {})
        self.hmac_secret = hmac_secret
        self.index = index
        self.sourcetype = sourcetype
        self.host = host or socket.gethostname()
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._proxy, self._proxy_headers = (
            proxy or network.proxy_settings(None)
        ).for_aiohttp(url)
        self._clock = clock
        # What earlier attempts at the batch being sent settled, by event id:
        # None once the receiver took the record, else why it was rejected.
        self._settled: dict[str, str | None] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool
        if url.startswith("http://"):
            log.warning("sink.plaintext_http", sink=name, url=network.redact(url))
        if not verify_tls:
            log.warning("sink.tls_unverified", sink=name, url=network.redact(url))
        self._ssl = network.ssl_context(ca_bundle, ca_mode, verify_tls)

    @classmethod
    def from_options(cls, name: str, options: Options) -> Self:
        url = options.string("url")
        preset = options.choice("preset", ("splunk-hec", "elasticsearch"), "")
        body_format = options.choice("format", ("json-array", "ndjson"), "json-array")
        batch_bytes = options.integer("batch_bytes", 1_000_000, minimum=1024)
        use_gzip = options.boolean("gzip", False)
        headers: dict[str, str | Secret] = {}
        for header, value in options.mapping("headers").items():
            if isinstance(value, str):
                headers[str(header)] = value
            else:
                secret = options.resolve_secret(f"headers.{header}", value)
                if secret is not None:
                    headers[str(header)] = secret
        hmac_secret: Secret | None = None
        env_name = options.string("hmac_secret_env")
        file_name = options.string("hmac_secret_file")
        if env_name:
            hmac_secret = options.resolve_secret("hmac_secret_env", {"env": env_name})
        if file_name:
            hmac_secret = options.resolve_secret(
                "hmac_secret_file", {"file": file_name}
            )
        # Header names are case-insensitive: two spellings would be sent as
        # two headers, and a token beside an Authorization header would
        # silently replace it (or be sent with it).
        spellings: dict[str, str] = {}
        for header in headers:
            if (first := spellings.setdefault(header.lower(), header)) != header:
                options.problems.append(
                    f"headers: {first} and {header} name the same header; give it once"
                )
        token = options.secret("token")
        has_authorization = "authorization" in spellings
        if token is not None and has_authorization:
            options.problems.append(
                "token: give the token once, as token or as an Authorization "
                "header, not both"
            )
        elif token is not None:
            headers["Authorization"] = Secret(
                ("Splunk " if preset == "splunk-hec" else "ApiKey ") + token.reveal(),
                token.origin,
            )
        ca_bundle = options.string("ca_bundle")
        ca_mode = options.choice("ca_mode", network.CA_MODES, "add")
        verify_tls = options.boolean("verify_tls", True)
        request_timeout = options.number("request_timeout", 30.0)
        connect_timeout = options.number("connect_timeout", 10.0)
        proxy_url = options.string("proxy")
        proxy_username = options.string("proxy_username")
        proxy_password = options.secret("proxy_password")
        if proxy_password is not None and proxy_username is None:
            options.problems.append("proxy_password: needs proxy_username")
        has_proxy_url = proxy_url is not None and proxy_url.strip().lower() not in (
            network.DIRECT,
            "",
        )
        if has_proxy_url:
            assert proxy_url is not None
            problem = network.proxy_problem(proxy_url, "proxy_password")
            if problem is not None:
                options.problems.append(f"proxy: {problem}")
                proxy_url = None
        elif proxy_username is not None:
            options.problems.append(
                "proxy_username: proxy credentials need a proxy URL in proxy"
            )
        if ca_bundle is not None and not Path(ca_bundle).expanduser().is_file():
            options.problems.append(f"ca_bundle: no such file: {ca_bundle}")
        index = options.string("index", "hunt-runner")
        sourcetype = options.string("sourcetype", "hunt-runner:record")
        host = options.string("host")
        if url is None:
            options.problems.append("url: required")
        elif not url.startswith(("https://", "http://")):
            options.problems.append("url: expected an https:// address")
        elif _has_credentials(url) and (token is not None or has_authorization):
            # aiohttp turns credentials in the address into an Authorization
            # header of its own and refuses to send a second one.
            options.problems.append(
                "url: a user name or password in the address cannot be combined "
                "with token or an Authorization header; give the credentials once"
            )
        if preset == "splunk-hec" and token is None and not has_authorization:
            options.problems.append("token: the splunk-hec preset needs {env: NAME}")
        options.finish()
        assert url is not None and index is not None and sourcetype is not None

        return cls(
            name,
            url=url,
            format=body_format,
            preset=preset or None,
            batch_bytes=batch_bytes,
            gzip=use_gzip,
            headers=headers,
            hmac_secret=hmac_secret,
            ca_bundle=ca_bundle,
            ca_mode=ca_mode or "add",
            verify_tls=verify_tls,
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            proxy=network.proxy_settings(
                proxy_url, username=proxy_username, password=proxy_password
            ),
            index=index,
            sourcetype=sourcetype,
            host=host,
        )

    # Bodies -----------------------------------------------------------------

    @property
    def content_type(self) -> str:
        if self.preset == "elasticsearch" or self.format == "ndjson":
            return "application/x-ndjson"

        return "application/json"

    def _encode(self, record: Record) -> bytes:
        """One record's part of a body, separators included."""
        if self.preset == "splunk-hec":
            event = {
                "time": _event_time(record),
                "host": self.host,
                "source": "hunt-runner",
                "sourcetype": self.sourcetype,
                "event": record.to_dict(),
            }
            return _dumps(event).encode()
        if self.preset == "elasticsearch":
            action = {"index": {"_index": self.index, "_id": record.event_id}}
            return f"{_dumps(action)}\n{record.to_json()}\n".encode()
        if self.format == "ndjson":
            return f"{record.to_json()}\n".encode()

        return record.to_json().encode()

    def _body(self, parts: Sequence[bytes]) -> bytes:
        if self.preset is None and self.format == "json-array":
            return b"[" + b",".join(parts) + b"]"

        return b"".join(parts)

    def _chunks(self, batch: Sequence[Record]) -> list[list[tuple[Record, bytes]]]:
        """Cut the batch so each request body stays within ``batch_bytes``."""
        chunks: list[list[tuple[Record, bytes]]] = []
        current: list[tuple[Record, bytes]] = []
        size = 2
        for record in batch:
            part = self._encode(record)
            if current and size + len(part) + 1 > self.batch_bytes:
                chunks.append(current)
                current, size = [], 2
            current.append((record, part))
            size += len(part) + 1
        if current:
            chunks.append(current)

        return chunks

    # Sending ----------------------------------------------------------------

    async def send(self, batch: Sequence[Record]) -> SendResult | None:
        # The dispatcher retries a failed or timed-out batch as it is: records
        # an earlier attempt already settled are not posted again, so a batch
        # cut into several requests makes progress and sends no repeats.
        ids = {record.event_id for record in batch}
        self._settled = {k: v for k, v in self._settled.items() if k in ids}
        todo = [record for record in batch if record.event_id not in self._settled]
        for chunk in self._chunks(todo):
            await self._post_splitting(chunk)
        rejected = [
            (record, reason)
            for record in batch
            if (reason := self._settled.get(record.event_id)) is not None
        ]
        self._settled = {}
        if rejected:
            raise RecordsRejected(self.name, rejected)

        return None

    async def _post_splitting(self, chunk: list[tuple[Record, bytes]]) -> None:
        """POST *chunk*; on 413 or 400 send its halves, down to single records.

        A receiver answers 400 for a whole request when one record in it is
        bad (Splunk HEC does), so halving finds the records it refuses and
        delivers the others.
        """
        status, text = await self._post(chunk)
        if 200 <= status < 300:
            return
        if status not in (400, 413):
            # Refused for good: only this request's records, not the rest of
            # the batch, some of which other requests have delivered.
            reason = f"HTTP {status}: {text[:200]}"
            self._settled.update((record.event_id, reason) for record, _ in chunk)
            return
        if len(chunk) == 1:
            reason = (
                "413: too large for the receiver"
                if status == 413
                else f"HTTP 400: {text[:200]}"
            )
            self._settled[chunk[0][0].event_id] = reason
            return
        middle = len(chunk) // 2
        log.debug("sink.batch_split", sink=self.name, rows=len(chunk))
        await self._post_splitting(chunk[:middle])
        await self._post_splitting(chunk[middle:])

    async def _post(self, chunk: list[tuple[Record, bytes]]) -> tuple[int, str]:
        """POST *chunk*: its status and answer, or raise when a retry may help."""
        body = self._body([part for _, part in chunk])
        headers = {
            "Content-Type": self.content_type,
            "User-Agent": f"hunt-runner/{__version__}",
        }
        for header, value in self.headers.items():
            headers[header] = value.reveal() if isinstance(value, Secret) else value
        if self.hmac_secret is not None:
            key = self.hmac_secret.reveal().encode()
            headers[SIGNATURE_HEADER] = sign(key, int(self._clock()), body)
        if self.gzip:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"

        session = self._session_open()
        try:
            async with session.post(
                self.url,
                data=body,
                headers=headers,
                ssl=self._ssl,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
                # A redirect would re-send the headers (keys, tokens) to
                # another host, or turn the POST into a GET whose 200 would
                # count as delivery.
                allow_redirects=False,
            ) as response:
                status = response.status
                text = await response.text(errors="replace")
                retry_after = response.headers.get("Retry-After")
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise SinkError(self.name, f"POST failed: {error!r}") from error

        if 200 <= status < 300:
            if self.preset == "elasticsearch":
                self._check_bulk_items(chunk, text)
            else:
                self._settled.update((record.event_id, None) for record, _ in chunk)
            return status, text
        if status == 429:
            raise SinkThrottled(
                self.name,
                "429 too many requests",
                retry_after=_retry_after(retry_after),
            )
        if 300 <= status < 400:
            # A moved endpoint is a configuration to fix: keep the rows.
            raise SinkError(
                self.name,
                f"HTTP {status}: redirected to {network.redact(location)[:200]!r}; "
                "set url to the final address",
            )
        # A refused credential or a wrong address is fixed by the operator,
        # not by the rows: they wait in the outbox instead of the dead letters.
        if status >= 500 or status in (401, 403, 404, 407, 408):
            raise SinkError(self.name, f"HTTP {status}: {text[:200]}")

        return status, text

    def _check_bulk_items(self, chunk: list[tuple[Record, bytes]], text: str) -> None:
        """Elasticsearch answers 200 even when some documents failed."""
        try:
            answer = json.loads(text)
        except ValueError as error:
            raise SinkError(self.name, "bulk answer is not JSON") from error
        if not isinstance(answer, dict) or not answer.get("errors"):
            self._settled.update((record.event_id, None) for record, _ in chunk)
            return
        retry = False
        items = answer.get("items") or []
        for index, (record, _) in enumerate(chunk):
            item = items[index] if index < len(items) else None
            result = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = int(result.get("status", 0)) if isinstance(result, dict) else 0
            if 200 <= status < 300:
                self._settled[record.event_id] = None
            elif status == 429 or status >= 500 or status == 0:
                # Throttled, failed on the cluster's side, or not answered for.
                retry = True
            else:
                reason = _dumps(result.get("error", status))[:500]
                self._settled[record.event_id] = f"elasticsearch {status}: {reason}"
        if retry:
            # Indexing by _id is idempotent, so even a repeat of a document
            # cannot make a duplicate in the index.
            raise SinkError(self.name, "bulk items throttled or failed; retrying")

    def _session_open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.request_timeout, sock_connect=self.connect_timeout
                ),
                auto_decompress=True,
            )

        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _has_credentials(url: str) -> bool:
    """Whether *url* carries user information (``user:password@``)."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:  # a malformed address fails at its first request
        return False


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number or an HTTP date.

    Read like the API's own 429s: an infinite or unreadable value is None.
    """
    if not value:
        return None

    return parse_retry_after({"Retry-After": value})


def _event_time(record: Record) -> float:
    """The row's own Timestamp when it has one, else the end of the window."""
    stamp = record.row.get("Timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass

    return record.window_end.timestamp()
