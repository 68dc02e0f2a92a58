"""Webhook delivery over real HTTP to a local aiohttp receiver on 127.0.0.1.

Sleeps are injected (recorded, not slept) so the retry schedule is asserted exactly and
every test stays well under a second or two.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from interlock.webhooks import (
    DeliveryResult,
    RetrySchedule,
    WebhookSender,
    generate_secret,
    parse_retry_after,
)
from interlock.webhooks.signing import load_secret

SECRET = generate_secret()
LOCAL = ["127.0.0.1"]

Reply = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status(code: int, **headers: str) -> Reply:
    async def reply(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, headers=headers)

    return reply


@dataclass
class Seen:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    base: str
    port: int
    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        return self.base + path

    def hang(self) -> Reply:
        async def reply(request: web.Request) -> web.StreamResponse:
            try:
                await asyncio.wait_for(self.release.wait(), 5)
            except TimeoutError:
                pass
            return web.Response(status=200)

        return reply


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(base="", port=0)

    async def handle(request: web.Request) -> web.StreamResponse:
        rec.seen.append(Seen(request.path_qs, await request.read(), dict(request.headers)))
        reply = rec.replies.pop(0) if rec.replies else status(200)
        return await reply(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    rec.base = f"http://127.0.0.1:{rec.port}"
    yield rec
    rec.release.set()
    await runner.cleanup()


class FakeSleep:
    """Records delays and advances a fake clock instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now


def sender(sleep: FakeSleep | None = None, **kwargs: Any) -> WebhookSender:
    options: dict[str, Any] = {
        "secret": SECRET,
        "allow": LOCAL,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "base_delay_s": 0.5,
        "max_delay_s": 4.0,
        "sleep": sleep or FakeSleep(),
    }
    options.update(kwargs)
    return WebhookSender(**options)


async def test_500_then_200_is_delivered_with_one_id_and_valid_signatures(
    receiver: Receiver,
) -> None:
    receiver.replies = [status(500), status(200)]
    async with sender() as s:
        result = await s.deliver(receiver.url(), "job.completed", {"job": "j1", "n": 2})
    assert result.delivered and result.attempts == 2 and result.status == 200
    assert len(receiver.seen) == 2
    verifier = Webhook(SECRET)
    for seen in receiver.seen:
        assert seen.headers["webhook-id"] == result.webhook_id
        assert seen.headers["Content-Type"] == "application/json"
        payload = verifier.verify(seen.body, seen.headers)
        assert payload["type"] == "job.completed"
        assert payload["data"] == {"job": "j1", "n": 2}
        assert payload["timestamp"].endswith("Z")
        dt.datetime.fromisoformat(payload["timestamp"])
    assert receiver.seen[0].body == receiver.seen[1].body  # same event, same body
    tampered = receiver.seen[0].body.replace(b'"n":2', b'"n":3')
    assert tampered != receiver.seen[0].body
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, receiver.seen[0].headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(receiver.seen[0].body, receiver.seen[0].headers)


async def test_caller_supplied_webhook_id_is_kept(receiver: Receiver) -> None:
    async with sender() as s:
        result = await s.deliver(receiver.url(), "job.failed", {}, webhook_id="job_123-a")
        assert result.webhook_id == "job_123-a"
        with pytest.raises(ValueError):
            await s.deliver(receiver.url(), "job.failed", {}, webhook_id="a.b")
        with pytest.raises(ValueError):
            await s.deliver(receiver.url(), "", {})
    assert receiver.seen[0].headers["webhook-id"] == "job_123-a"
    assert len(receiver.seen) == 1


async def test_secret_rotation_signs_with_every_secret(receiver: Receiver) -> None:
    new = generate_secret()
    async with sender(secret=[SECRET, new]) as s:
        assert (await s.deliver(receiver.url(), "job.completed", {})).delivered
    seen = receiver.seen[0]
    assert len(seen.headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(seen.body, seen.headers)
    Webhook(new).verify(seen.body, seen.headers)


def test_secrets_are_validated_without_echoing_them() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    load_secret(secret)
    for bad in ["", "hunter2hunter2hunter2hunter2", "whsec_!!notbase64!!", "whsec_c2hvcnQ="]:
        with pytest.raises(ValueError) as info:
            WebhookSender(secret=bad)
        assert bad == "" or bad not in str(info.value)
    with pytest.raises(ValueError):
        generate_secret(8)


async def test_redirect_is_a_failure_and_never_followed(receiver: Receiver) -> None:
    receiver.replies = [status(302, Location="/other"), status(307, Location="/other")]
    async with sender(max_attempts=2) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert not result.delivered
    assert result.attempts == 2 and result.status == 307
    assert [seen.path for seen in receiver.seen] == ["/hook", "/hook"]


async def test_redirect_to_an_internal_address_is_not_followed(receiver: Receiver) -> None:
    connections = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    internal = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = internal.sockets[0].getsockname()[1]
    receiver.replies = [status(302, Location=f"http://127.0.0.1:{port}/admin")]
    try:
        async with sender(max_attempts=1) as s:
            result = await s.deliver(receiver.url(), "job.completed", {})
    finally:
        internal.close()
        await internal.wait_closed()
    assert not result.delivered and result.status == 302
    assert connections == 0


async def test_410_disables_the_endpoint(receiver: Receiver) -> None:
    receiver.replies = [status(410)]
    gone: list[str] = []

    async def on_disabled(url: str) -> None:
        gone.append(url)

    sleep = FakeSleep()
    async with sender(sleep, on_disabled=on_disabled) as s:
        first = await s.deliver(receiver.url(), "job.completed", {})
        assert first == DeliveryResult(
            first.webhook_id, False, 1, 410, disabled=True, error="410 Gone"
        )
        assert gone == [receiver.url()]
        assert s.is_disabled(receiver.url())
        again = await s.deliver(receiver.url(), "job.completed", {})
        assert again.disabled and again.attempts == 0
        other = await s.deliver(receiver.url("/other"), "job.completed", {})
        assert other.delivered
    assert sleep.delays == []
    assert [seen.path for seen in receiver.seen] == ["/hook", "/other"]


async def test_persisted_disabled_urls_are_not_delivered_to(receiver: Receiver) -> None:
    async with sender(disabled_urls=[receiver.url()]) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert result.disabled and result.attempts == 0
    assert receiver.seen == []


async def test_429_retry_after_seconds_is_honoured(receiver: Receiver) -> None:
    receiver.replies = [status(429, **{"Retry-After": "2"}), status(200)]
    sleep = FakeSleep()
    async with sender(sleep, max_retry_after_s=30, rand=lambda: 0.0) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert result.delivered and result.attempts == 2
    assert sleep.delays == [2.0]


async def test_503_retry_after_http_date_is_honoured(receiver: Receiver) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    receiver.replies = [status(503, **{"Retry-After": format_datetime(when, usegmt=True)})]
    sleep = FakeSleep()
    async with sender(sleep, max_retry_after_s=30, rand=lambda: 0.0) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert result.delivered
    assert 3.0 <= sleep.delays[0] <= 5.0


async def test_retry_after_is_capped(receiver: Receiver) -> None:
    receiver.replies = [status(429, **{"Retry-After": "86400"})]
    sleep = FakeSleep()
    async with sender(sleep, max_retry_after_s=7, rand=lambda: 0.0) as s:
        assert (await s.deliver(receiver.url(), "job.completed", {})).delivered
    assert sleep.delays == [7.0]


async def test_retry_after_is_ignored_on_other_statuses(receiver: Receiver) -> None:
    receiver.replies = [status(500, **{"Retry-After": "60"})]
    sleep = FakeSleep()
    async with sender(sleep, max_retry_after_s=100, rand=lambda: 0.0) as s:
        assert (await s.deliver(receiver.url(), "job.completed", {})).delivered
    assert sleep.delays == [0.0]


def test_parse_retry_after() -> None:
    now = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    for junk in [None, "", "-1", "soon", "nan", "inf"]:
        assert parse_retry_after(junk, now) is None


async def test_hung_receiver_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.replies = [receiver.hang(), status(200)]
    sleep = FakeSleep()
    started = time.monotonic()
    async with sender(sleep, timeout_s=0.5) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    elapsed = time.monotonic() - started
    assert result.delivered and result.attempts == 2
    assert 0.45 <= elapsed < 2.0
    assert len(sleep.delays) == 1


async def test_timeout_error_is_reported(receiver: Receiver) -> None:
    receiver.replies = [receiver.hang()]
    async with sender(timeout_s=0.3, max_attempts=1) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert not result.delivered and result.status is None
    assert result.error == "timed out after 0.3s"


async def test_connection_errors_are_retried_until_attempts_run_out() -> None:
    sleep = FakeSleep()
    async with sender(sleep, max_attempts=3) as s:
        result = await s.deliver(f"http://127.0.0.1:{_closed_port()}/hook", "job.completed", {})
    assert not result.delivered and result.attempts == 3 and result.status is None
    assert result.error is not None and result.error.startswith("connection failed")
    assert len(sleep.delays) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_full_jitter_bounds() -> None:
    schedule = RetrySchedule(base_delay_s=1.0, max_delay_s=10.0)
    for retry in range(12):
        ceiling = min(10.0, 1.0 * 2**retry)
        assert schedule.ceiling(retry) == ceiling
        assert schedule.backoff(retry, lambda: 0.0) == 0.0
        assert schedule.backoff(retry, lambda: 1.0) == ceiling
        assert schedule.backoff(retry, lambda: 0.5) == ceiling / 2
    assert schedule.ceiling(10_000) == 10.0  # no overflow
    with pytest.raises(ValueError):
        RetrySchedule(max_attempts=0)
    with pytest.raises(ValueError):
        RetrySchedule(base_delay_s=-1)


@pytest.mark.parametrize("draw", [0.0, 0.25, 1.0])
async def test_backoff_delays_between_attempts(receiver: Receiver, draw: float) -> None:
    receiver.replies = [status(500)] * 5
    sleep = FakeSleep()
    async with sender(sleep, max_attempts=5, base_delay_s=1.0, max_delay_s=5.0) as s:
        s._rand = lambda: draw
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert not result.delivered and result.attempts == 5 and result.status == 500
    assert result.error == "HTTP 500"
    assert sleep.delays == [draw * c for c in (1.0, 2.0, 4.0, 5.0)]
    for n, delay in enumerate(sleep.delays):
        assert 0.0 <= delay <= min(5.0, 1.0 * 2**n)


async def test_total_time_bounds_the_retries(receiver: Receiver) -> None:
    receiver.replies = [status(500)] * 5
    sleep = FakeSleep()
    async with sender(
        sleep,
        clock=sleep.clock,
        max_attempts=8,
        base_delay_s=4.0,
        max_delay_s=100.0,
        max_total_s=10.0,
        rand=lambda: 1.0,
    ) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert not result.delivered
    assert sleep.delays == [4.0]  # 4 s, then 8 s more would pass the 10 s window
    assert result.attempts == 2


async def test_unsafe_url_is_refused_before_any_request(receiver: Receiver) -> None:
    async with sender(allow=()) as s:
        result = await s.deliver(receiver.url(), "job.completed", {})
    assert not result.delivered and result.attempts == 0
    assert result.error is not None and "loopback" in result.error
    assert receiver.seen == []


async def test_allowlist_by_cidr(receiver: Receiver) -> None:
    async with sender(allow=["127.0.0.0/8"]) as s:
        assert (await s.deliver(receiver.url(), "job.completed", {})).delivered


async def test_allowlist_by_hostname(receiver: Receiver) -> None:
    async with sender(allow=["localhost"]) as s:
        ok = await s.deliver(f"http://localhost:{receiver.port}/hook", "job.completed", {})
        refused = await s.deliver(receiver.url(), "job.completed", {})
    assert ok.delivered
    assert not refused.delivered and refused.attempts == 0
    assert len(receiver.seen) == 1


async def test_pinned_connection_keeps_hostname_and_resolves_once(receiver: Receiver) -> None:
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    receiver.replies = [status(500), status(200)]
    async with sender(allow=["hooks.test"], lookup=lookup) as s:
        ok = await s.deliver(f"http://hooks.test:{receiver.port}/in", "job.completed", {})
        other = await s.deliver(f"http://other.test:{receiver.port}/in", "job.completed", {})
    assert ok.delivered and ok.attempts == 2
    assert calls == ["hooks.test", "hooks.test", "other.test"]  # once per attempt
    assert not other.delivered and other.attempts == 1  # same address, name not listed
    assert [seen.headers["Host"] for seen in receiver.seen] == [f"hooks.test:{receiver.port}"] * 2


async def test_rebinding_answer_with_one_internal_address_is_refused(
    receiver: Receiver,
) -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "10.0.0.7"]

    async with sender(allow=["127.0.0.1"], lookup=lookup) as s:
        result = await s.deliver(f"http://rebind.test:{receiver.port}/", "job.completed", {})
    assert not result.delivered and result.attempts == 1
    assert result.error is not None and "10.0.0.7" in result.error
    assert receiver.seen == []


async def test_logs_show_neither_secret_nor_path_nor_query(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.replies = [status(500), status(200)]
    url = receiver.url("/hook/pathtoken123?token=querytoken456")
    with caplog.at_level(logging.DEBUG, logger="interlock.webhooks"):
        async with sender() as s:
            assert (await s.deliver(url, "job.completed", {})).delivered
    text = caplog.text
    assert "127.0.0.1" in text
    assert "pathtoken123" not in text and "querytoken456" not in text
    assert SECRET not in text and SECRET.removeprefix("whsec_") not in text
    assert receiver.seen[-1].path == "/hook/pathtoken123?token=querytoken456"


async def test_tls_uses_the_hostname_for_sni_and_certificate() -> None:
    pytest.importorskip("cryptography")
    server_ctx, client_ctx = _tls_contexts("hooks.test")
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]

    async def lookup(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    try:
        async with sender(allow=["hooks.test"], lookup=lookup, ssl_context=client_ctx) as s:
            result = await s.deliver(f"https://hooks.test:{port}/in", "job.completed", {})
    finally:
        await runner.cleanup()
    assert result.delivered and result.status == 204
    assert names == ["hooks.test"]


def _tls_contexts(hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "interlock test CA")])
    ca_cert = build("interlock test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = build(hostname, leaf_key, ca_name, ca_key, ca=False)

    pem = leaf_cert.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        server.load_cert_chain(handle.name)
    client = ssl.create_default_context(
        cadata=ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    )
    return server, client


def test_payload_is_plain_json_of_what_the_caller_passed() -> None:
    from interlock.webhooks.signing import build_body

    when = dt.datetime(2025, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
    body = orjson.loads(build_body("job.completed", {"id": "j1", "result": [1]}, when))
    assert body == {
        "type": "job.completed",
        "timestamp": "2025-05-06T07:08:09.123Z",
        "data": {"id": "j1", "result": [1]},
    }
