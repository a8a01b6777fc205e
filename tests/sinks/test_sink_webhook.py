"""The webhook sink against a real HTTPS receiver on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
from aiohttp import web
from sink_receivers import WebhookReceiver
from sink_tls import TlsFiles, make_tls_files

from runner import outbox
from runner.errors import ConfigError, SinkError
from runner.outbox import Outbox
from runner.records import Record
from runner.sinks import Dispatcher, RecordsRejected, build_sink
from runner.sinks.base import LocalSinkSpec, Sink
from runner.validate import validate_paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def receiver(certificates: TlsFiles) -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver(certificates.server_context())
    await server.start()
    yield server
    await server.stop()


def _sink(url: str, certificates: TlsFiles, **options: Any) -> Sink:
    options = {"url": url, "ca_bundle": str(certificates.ca_path), **options}
    return build_sink(LocalSinkSpec("hook", "webhook", options=options))


async def _deliver(
    tmp_path: Path, sink: Sink, batch: list[Record], **kwargs: Any
) -> Dispatcher:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    outbox.create_schema(conn)
    dispatcher = Dispatcher(
        Outbox(path),
        [(LocalSinkSpec("hook", "webhook"), sink)],
        dead_letter_dir=tmp_path / "dead-letter",
        backoff_base=0.01,
        backoff_cap=0.05,
        **kwargs,
    )
    dispatcher.enqueue(conn, batch)
    async with dispatcher:
        assert await dispatcher.drain(timeout=10)

    return dispatcher


def _unavailable_first(count: int) -> Callable[[Any, WebhookReceiver], Any]:
    def policy(documents: Any, server: WebhookReceiver) -> web.Response | None:
        return web.Response(status=503) if server.calls <= count else None

    return policy


async def test_recovering_receiver_gets_every_row_once(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A receiver answering 503 for a while then recovering gets each row once."""
    receiver.policy = _unavailable_first(4)
    sent = records(95)
    sink = _sink(receiver.url, certificates, batch_size=10)
    dispatcher = await _deliver(tmp_path, sink, sent)

    assert sorted(receiver.accepted_ids) == sorted(r.event_id for r in sent)
    assert len(receiver.accepted_ids) == len(set(receiver.accepted_ids))
    assert dispatcher.stats()["hook"]["retried"] == 4
    assert dispatcher.stats()["hook"]["delivered"] == 95


async def test_413_splits_and_dead_letters_the_oversized_record(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """Too-large bodies are halved; a lone huge record is dead-lettered."""

    def limit(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        too_many = len(documents) > 3
        huge = any("Blob" in d["row"] for d in documents)
        return web.Response(status=413) if too_many or huge else None

    receiver.policy = limit
    sent = records(10) + records(1, row={"Blob": "x" * 5000})
    dispatcher = await _deliver(tmp_path, _sink(receiver.url, certificates), sent)

    assert sorted(receiver.accepted_ids) == sorted(r.event_id for r in sent[:10])
    letters = (tmp_path / "dead-letter" / "hook.jsonl").read_text().splitlines()
    assert [json.loads(line)["record"]["event_id"] for line in letters] == [
        sent[10].event_id
    ]
    assert dispatcher.stats()["hook"]["dead_lettered"] == 1


async def test_429_retry_after_is_honoured(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A 429 with Retry-After makes the dispatcher wait at least that long."""

    def throttle(documents: Any, server: WebhookReceiver) -> Any:
        if server.calls == 1:
            return web.Response(status=429, headers={"Retry-After": "3"})
        return None

    receiver.policy = throttle
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    await _deliver(tmp_path, _sink(receiver.url, certificates), records(2), sleep=sleep)

    assert delays == [3.0]
    assert len(receiver.accepted_ids) == 2


async def test_signature_gzip_and_headers(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The HMAC covers t and the uncompressed body; header secrets resolve."""
    monkeypatch.setenv("HOOK_KEY", "s3cret")
    token_file = tmp_path / "token"
    token_file.write_text("abc123\n")
    sink = _sink(
        receiver.url,
        certificates,
        gzip=True,
        format="ndjson",
        hmac_secret_env="HOOK_KEY",
        headers={"X-Team": "soc", "X-Token": {"file": str(token_file)}},
    )
    async with sink:
        await sink.send(records(3))

    request = receiver.requests[0]
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers["X-Team"] == "soc"
    assert request.headers["X-Token"] == "abc123"
    fields = dict(
        p.split("=", 1) for p in request.headers["X-Hunt-Runner-Signature"].split(",")
    )
    expected = hmac.new(
        b"s3cret", f"{fields['t']}.".encode() + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(int(fields["t"]) - time.time()) < 60
    assert len(request.documents) == 3


async def test_batch_bytes_cuts_requests(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A batch larger than batch_bytes goes out as several requests within the limit."""
    sink = _sink(receiver.url, certificates, batch_bytes=2048)
    async with sink:
        await sink.send(records(20))

    assert len(receiver.requests) > 3
    assert all(len(r.raw) <= 2048 for r in receiver.requests)
    assert len(receiver.accepted_ids) == 20


async def test_splunk_hec_shape(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HEC preset sends concatenated events with a Splunk token header."""
    monkeypatch.setenv("HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
    sink = _sink(
        receiver.url,
        certificates,
        preset="splunk-hec",
        token={"env": "HEC_TOKEN"},
        host="runner-1",
    )
    async with sink:
        await sink.send(records(2))

    request = receiver.requests[0]
    assert request.headers["Authorization"] == (
        "Splunk 00000000-0000-0000-0000-000000000000"
    )
    assert b"}{" in request.body
    event = request.documents[0]
    assert event["source"] == "hunt-runner"
    assert event["host"] == "runner-1"
    assert event["sourcetype"] == "hunt-runner:record"
    assert event["time"] == datetime(2026, 12, 3, 11, 59, tzinfo=UTC).timestamp()
    assert event["event"]["event_id"] == records(1)[0].event_id


async def test_elasticsearch_bulk_shape_and_item_errors(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """The bulk preset indexes by event id and reads per-item errors."""

    def bulk(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        server.accepted_ids.extend(d["index"]["_id"] for d in documents[::2])
        items = [
            {"index": {"status": 201}},
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
        ]
        return web.json_response({"errors": True, "items": items})

    receiver.policy = bulk
    sent = records(2)
    sink = _sink(
        receiver.url.replace("/hook", "/_bulk"),
        certificates,
        preset="elasticsearch",
        index="hunts",
    )
    async with sink:
        with pytest.raises(RecordsRejected) as caught:
            await sink.send(sent)

    assert receiver.accepted_ids == [r.event_id for r in sent]
    assert [record for record, _ in caught.value.rejected] == [sent[1]]
    assert "mapper_parsing_exception" in caught.value.rejected[0][1]


async def test_untrusted_certificate_is_retryable_error(
    receiver: WebhookReceiver, records: Callable[..., list[Record]]
) -> None:
    """Without the private CA the TLS check fails; verify_tls false skips it."""
    strict = build_sink(LocalSinkSpec("hook", "webhook", options={"url": receiver.url}))
    async with strict:
        with pytest.raises(SinkError) as caught:
            await strict.send(records(1))
    assert caught.value.retryable

    lax = build_sink(
        LocalSinkSpec(
            "hook", "webhook", options={"url": receiver.url, "verify_tls": False}
        )
    )
    async with lax:
        await lax.send(records(1))
    assert len(receiver.accepted_ids) == 1


async def test_client_error_is_not_retryable(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A 400 answer rejects the batch for good."""
    receiver.policy = lambda documents, server: web.Response(status=400, text="bad")
    sink = _sink(receiver.url, certificates)
    async with sink:
        with pytest.raises(SinkError) as caught:
            await sink.send(records(1))

    assert not caught.value.retryable


async def test_sigkill_during_delivery_loses_nothing(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A delivery process killed with SIGKILL and restarted delivers every row."""
    rows = 400
    receiver.delay = 0.02
    child = Path(__file__).with_name("deliver_child.py")
    command = [
        sys.executable,
        str(child),
        str(tmp_path / "state.db"),
        receiver.url,
        str(certificates.ca_path),
        str(rows),
    ]
    first = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    while len(receiver.accepted_ids) < rows // 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait)
    delivered_before_kill = len(set(receiver.accepted_ids))
    assert 0 < delivered_before_kill < rows

    second = subprocess.Popen(command)
    code = await asyncio.to_thread(second.wait, 30)

    expected = {r.event_id for r in records(rows)}
    assert code == 0
    assert set(receiver.accepted_ids) == expected
    # At most the batch in flight at the kill is delivered twice.
    assert len(receiver.accepted_ids) - rows <= 20


async def test_retried_batch_does_not_resend_requests_already_accepted(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """When a later request of a batch fails, the retry skips the accepted ones."""
    failures = {"left": 20}

    def flaky_tail(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        if failures["left"] and any(d["row"]["Count"] >= 15 for d in documents):
            failures["left"] -= 1
            return web.Response(status=500)
        return None

    receiver.policy = flaky_tail
    sent = records(20)
    sink = _sink(receiver.url, certificates, batch_size=20, batch_bytes=2048)
    await _deliver(tmp_path, sink, sent)

    assert sorted(receiver.accepted_ids) == sorted(r.event_id for r in sent)
    assert len(receiver.accepted_ids) == len(set(receiver.accepted_ids))


async def test_413_for_everything_from_a_slow_receiver_finishes(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A slow receiver refusing every size dead-letters the batch, not loops forever."""
    receiver.policy = lambda documents, server: web.Response(status=413)
    receiver.delay = 0.02
    sent = records(40)
    sink = _sink(receiver.url, certificates, batch_size=40, timeout=0.5)
    dispatcher = await _deliver(tmp_path, sink, sent)

    letters = (tmp_path / "dead-letter" / "hook.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["record"]["event_id"] for line in letters) == sorted(
        r.event_id for r in sent
    )
    assert dispatcher.stats()["hook"]["dead_lettered"] == 40


async def test_elasticsearch_retries_only_the_throttled_items(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """Per-item 429s resend those documents only; per-item 400s are dead-lettered."""
    throttled = {"left": 3}
    indexed: list[str] = []

    def bulk(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        items = []
        for action in documents[::2]:
            document_id = action["index"]["_id"]
            if document_id == sent[2].event_id:
                items.append({"index": {"status": 400, "error": {"type": "mapping"}}})
            elif document_id == sent[1].event_id and throttled["left"]:
                throttled["left"] -= 1
                items.append({"index": {"status": 429}})
            else:
                indexed.append(document_id)
                items.append({"index": {"status": 201}})
        return web.json_response({"errors": True, "items": items})

    receiver.policy = bulk
    sent = records(4)
    sink = _sink(
        receiver.url.replace("/hook", "/_bulk"), certificates, preset="elasticsearch"
    )
    await _deliver(tmp_path, sink, sent)

    assert sorted(indexed) == sorted(r.event_id for i, r in enumerate(sent) if i != 2)
    assert len(indexed) == len(set(indexed))
    letters = (tmp_path / "dead-letter" / "hook.jsonl").read_text().splitlines()
    assert [json.loads(line)["record"]["event_id"] for line in letters] == [
        sent[2].event_id
    ]


@pytest.mark.parametrize(
    "retry_after", ["1e400", "99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
async def test_absurd_retry_after_is_capped(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    retry_after: str,
) -> None:
    """An infinite or centuries-long Retry-After pauses the sink for the cap only."""

    def throttle(documents: Any, server: WebhookReceiver) -> Any:
        if server.calls == 1:
            return web.Response(status=429, headers={"Retry-After": retry_after})
        return None

    receiver.policy = throttle
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    await _deliver(tmp_path, _sink(receiver.url, certificates), records(2), sleep=sleep)

    assert len(delays) == 1 and delays[0] <= 900
    assert len(receiver.accepted_ids) == 2


@pytest.mark.parametrize("status", [302, 307])
async def test_redirect_is_not_followed_with_the_records_or_the_secrets(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    monkeypatch: pytest.MonkeyPatch,
    status: int,
) -> None:
    """A redirect is a retryable error: no GET counted as delivery, no key elsewhere."""
    caught: list[tuple[str, dict[str, str]]] = []

    async def anything(request: web.Request) -> web.Response:
        caught.append((request.method, dict(request.headers)))
        return web.Response(text="<html>sign in</html>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    elsewhere = f"http://127.0.0.1:{port}/login"
    receiver.policy = lambda documents, server: web.Response(
        status=status, headers={"Location": elsewhere}
    )
    monkeypatch.setenv("HOOK_API_KEY", "k-123-secret")
    sink = _sink(
        receiver.url, certificates, headers={"X-Api-Key": {"env": "HOOK_API_KEY"}}
    )
    try:
        async with sink:
            with pytest.raises(SinkError) as error:
                await sink.send(records(2))
    finally:
        await runner.cleanup()

    assert error.value.retryable
    assert str(status) in str(error.value)
    assert caught == []


async def test_credentials_in_the_url_are_not_logged(
    receiver: WebhookReceiver, records: Callable[..., list[Record]]
) -> None:
    """A password written into the sink's URL stays out of its warnings and errors."""
    url = receiver.url.replace("https://", "https://elastic:hunter2pw@")
    with structlog.testing.capture_logs() as logs:
        sink = build_sink(
            LocalSinkSpec("hook", "webhook", options={"url": url, "verify_tls": False})
        )
        async with sink:
            await sink.send(records(1))
        plain = build_sink(
            LocalSinkSpec("hook", "webhook", options={"url": "http://u:hunter2pw@x"})
        )
        await plain.aclose()

    assert {entry["event"] for entry in logs} >= {
        "sink.tls_unverified",
        "sink.plaintext_http",
    }
    assert "hunter2pw" not in repr(logs)
    assert len(receiver.accepted_ids) == 1


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_auth_and_address_errors_keep_the_rows(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    status: int,
) -> None:
    """A refused token or a wrong path is retried until fixed, not dead-lettered."""

    def refuse_first(documents: Any, server: WebhookReceiver) -> Any:
        return web.Response(status=status) if server.calls <= 3 else None

    receiver.policy = refuse_first
    sent = records(5)
    dispatcher = await _deliver(tmp_path, _sink(receiver.url, certificates), sent)

    assert sorted(receiver.accepted_ids) == sorted(r.event_id for r in sent)
    assert dispatcher.stats()["hook"]["dead_lettered"] == 0
    assert not (tmp_path / "dead-letter").exists()


def test_credentials_in_the_url_and_an_authorization_header_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """validate reports URL credentials with a token or Authorization header."""
    monkeypatch.setenv("HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
    config = tmp_path / "config"
    config.mkdir()
    (config / "sinks.yaml").write_text(
        "tenants:\n"
        "  sandbox: {cloud: sandbox}\n"
        "sinks:\n"
        "  splunk:\n"
        "    type: webhook\n"
        "    preset: splunk-hec\n"
        "    url: https://hec:hunter2pw@splunk.example.com:8088/services/collector\n"
        "    token: {env: HEC_TOKEN}\n"
        "  elastic:\n"
        "    type: webhook\n"
        "    url: https://elastic:hunter2pw@es.example.com:9200/_bulk\n"
        "    headers: {authorization: ApiKey abc}\n"
        "  basic:\n"
        "    type: webhook\n"
        "    url: https://elastic:hunter2pw@es.example.com:9200/_bulk\n"
    )
    hunt = tmp_path / "hunt.yaml"
    hunt.write_text("query: T\n")

    problems = [str(problem) for problem in validate_paths([hunt], config)]

    message = (
        "url: a user name or password in the address cannot be combined with "
        "token or an Authorization header; give the credentials once"
    )
    assert problems == [
        f"{config / 'sinks.yaml'}:4: sink splunk: {message}",
        f"{config / 'sinks.yaml'}:9: sink elastic: {message}",
    ]


async def test_400_splits_and_dead_letters_only_the_refused_records(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
) -> None:
    """A 400 for a batch is halved until only the refused records are dead-lettered."""

    def refuse_marked(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        if any("Marker" in document["row"] for document in documents):
            return web.Response(status=400, text="invalid event: Marker not allowed")
        return None

    receiver.policy = refuse_marked
    sent = records(6) + records(1, row={"Marker": 1}) + records(5, start=6)
    sent += records(1, row={"Marker": 2})
    sink = _sink(receiver.url, certificates, batch_size=20)
    dispatcher = await _deliver(tmp_path, sink, sent)

    refused = [sent[6], sent[12]]
    assert sorted(receiver.accepted_ids) == sorted(
        r.event_id for r in sent if r not in refused
    )
    letters = [
        json.loads(line)
        for line in (tmp_path / "dead-letter" / "hook.jsonl").read_text().splitlines()
    ]
    assert [letter["record"]["event_id"] for letter in letters] == [
        r.event_id for r in refused
    ]
    assert {letter["error"] for letter in letters} == {
        "HTTP 400: invalid event: Marker not allowed"
    }
    assert dispatcher.stats()["hook"]["delivered"] == 11
    assert dispatcher.stats()["hook"]["dead_lettered"] == 2


@pytest.mark.parametrize("refused_count", [0, 15])
async def test_a_permanent_error_for_one_request_dead_letters_only_its_records(
    tmp_path: Path,
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    refused_count: int,
) -> None:
    """A 422 for one request of a cut batch dead-letters that request's records only."""

    def refuse_one(documents: list[dict[str, Any]], server: WebhookReceiver) -> Any:
        if any(d["row"]["Count"] == refused_count for d in documents):
            return web.Response(status=422, text="unprocessable")
        return None

    receiver.policy = refuse_one
    sent = records(20)
    sink = _sink(receiver.url, certificates, batch_size=20, batch_bytes=2048)
    dispatcher = await _deliver(tmp_path, sink, sent)

    letters = [
        json.loads(line)
        for line in (tmp_path / "dead-letter" / "hook.jsonl").read_text().splitlines()
    ]
    dead = {letter["record"]["event_id"] for letter in letters}
    assert sent[refused_count].event_id in dead
    assert dead.isdisjoint(receiver.accepted_ids)
    assert dead | set(receiver.accepted_ids) == {r.event_id for r in sent}
    assert len(dead) < 10
    assert {letter["error"] for letter in letters} == {"HTTP 422: unprocessable"}
    assert dispatcher.stats()["hook"]["delivered"] == 20 - len(dead)


@pytest.mark.parametrize("header", ["authorization", "AUTHORIZATION", "Authorization"])
async def test_splunk_hec_takes_an_authorization_header_in_any_case(
    receiver: WebhookReceiver,
    certificates: TlsFiles,
    records: Callable[..., list[Record]],
    header: str,
) -> None:
    """The HEC preset accepts its token as an Authorization header of any case."""
    sink = _sink(
        receiver.url,
        certificates,
        preset="splunk-hec",
        headers={header: "Splunk 11111111-1111-1111-1111-111111111111"},
    )
    async with sink:
        await sink.send(records(1))

    assert receiver.requests[0].headers["Authorization"] == (
        "Splunk 11111111-1111-1111-1111-111111111111"
    )


@pytest.mark.parametrize("header", ["authorization", "Authorization"])
def test_a_token_and_an_authorization_header_are_refused(
    monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    """token and an Authorization header together are a problem, not one dropped."""
    monkeypatch.setenv("HEC_TOKEN", "00000000-0000-0000-0000-000000000000")
    options = {
        "url": "https://splunk.example.com:8088/services/collector/event",
        "preset": "splunk-hec",
        "token": {"env": "HEC_TOKEN"},
        "headers": {header: "Splunk 11111111-1111-1111-1111-111111111111"},
    }
    with pytest.raises(ConfigError) as caught:
        build_sink(LocalSinkSpec("splunk", "webhook", options=options))

    assert [problem.message for problem in caught.value.problems] == [
        "sink splunk: token: give the token once, as token or as an "
        "Authorization header, not both"
    ]


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        (
            "http://svc:hunter2pw@proxy.example.com:3128",
            "credentials in the proxy URL are not accepted; use proxy_username "
            "with proxy_password",
        ),
        ("socks5://proxy.example.com:1080", "is not an http(s):// URL"),
        ("http://:3128", "has no host; write http(s)://host:port"),
        ("http://proxy.example.com:99999", "has an invalid port"),
        ("http://[::1:3128", "has an invalid host"),
    ],
)
def test_a_webhook_proxy_is_checked_like_a_tenant_proxy(
    proxy: str, message: str
) -> None:
    """A webhook proxy is refused without http(s), host or port, or with credentials."""
    options = {"url": "https://siem.example.com/hook", "proxy": proxy}
    with pytest.raises(ConfigError) as caught:
        build_sink(LocalSinkSpec("hook", "webhook", options=options))

    problems = [problem.message for problem in caught.value.problems]
    assert len(problems) == 1
    assert problems[0].startswith("sink hook: proxy: ")
    assert message in problems[0]
    assert "hunter2pw" not in problems[0]


def test_webhook_proxy_credentials_need_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """proxy_username without a proxy URL is a problem, not silently unused."""
    monkeypatch.setenv("HOOK_PROXY_PASSWORD", "pw")
    options = {
        "url": "https://siem.example.com/hook",
        "proxy_username": "svc",
        "proxy_password": {"env": "HOOK_PROXY_PASSWORD"},
    }
    with pytest.raises(ConfigError) as caught:
        build_sink(LocalSinkSpec("hook", "webhook", options=options))

    assert [problem.message for problem in caught.value.problems] == [
        "sink hook: proxy_username: proxy credentials need a proxy URL in proxy"
    ]
