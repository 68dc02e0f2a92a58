"""The SSRF guard: the classifier range by range, URL validation, allowlists, resolution,
and a matrix of loopback spellings that must never reach a real local listener."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from interlock.webhooks import (
    Allowlist,
    UnsafeWebhookURL,
    WebhookSender,
    blocked_reason,
    check_url,
    generate_secret,
    resolve_safe,
)
from interlock.webhooks.ssrf import Lookup

BLOCKED = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("192.0.0.8", "IETF"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "IPv4-compatible"),
    ("::ffff:127.0.0.1", "IPv4-mapped 127.0.0.1: loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped 169.254.169.254"),
    ("::ffff:10.0.0.1", "IPv4-mapped 10.0.0.1: private"),
    ("::ffff:0:7f00:1", "IPv4-translated"),
    ("64:ff9b::7f00:1", "NAT64 127.0.0.1: loopback"),
    ("64:ff9b::a9fe:a9fe", "NAT64 169.254.169.254"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:7f00:0001::1", "6to4 tunnel (embeds 127.0.0.1)"),
    ("2002:808:808::1", "6to4 tunnel (embeds 8.8.8.8)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "IETF protocol assignments"),
    ("100::1", "discard-only"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("5f00::1", "segment routing"),
    ("4000::1", "outside global unicast"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # mapped: judged by the IPv4 address it really reaches
    "64:ff9b::808:808",  # DNS64 answer for 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_classifier_blocks_each_range(address: str, reason: str) -> None:
    why = blocked_reason(address)
    assert why is not None, address
    assert reason in why


@pytest.mark.parametrize("address", ALLOWED)
def test_classifier_allows_public_addresses(address: str) -> None:
    assert blocked_reason(address) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("//example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("http://user@example.com/", "credentials"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http://example.com\\@127.0.0.1/", "'\\'"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\r\nX: y", "whitespace"),
        ("http:///path", "no host"),
        ("http://0x7f000001/", "non-canonical"),
        ("http://2130706433/", "non-canonical"),
        ("http://017700000001/", "non-canonical"),
        ("http://127.1/", "non-canonical"),
        ("http://0177.0.0.1/", "non-canonical"),
        ("http://127.0.0.1./", "non-canonical"),
        ("http://127.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://example.com:0/", "port"),
        ("http://example.com:99999/", "malformed"),
        ("https://" + "a" * 2100 + ".com/", "longer"),
    ],
)
def test_check_url_refuses(url: str, message: str) -> None:
    with pytest.raises(UnsafeWebhookURL) as info:
        check_url(url)
    assert message in str(info.value)


def test_check_url_accepts_public_https_and_normalises() -> None:
    target = check_url("HTTPS://Hooks.Example.COM./in?token=abc#frag")
    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.address is None
    assert target.url.fragment == ""
    assert target.origin == "https://hooks.example.com."
    literal = check_url("http://8.8.8.8:8080/x")
    assert str(literal.address) == "8.8.8.8"
    assert literal.port == 8080


def test_unsafe_url_is_a_value_error() -> None:
    assert issubclass(UnsafeWebhookURL, ValueError)


def test_allowlist_parsing() -> None:
    allow = Allowlist.parse(["10.0.0.0/8", "127.0.0.1", "[::1]", "Hooks.Internal."])
    assert allow.hosts == frozenset({"hooks.internal"})
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert allow.permits_host("HOOKS.internal")
    assert not allow.permits_host("other.internal")
    for bad in ["", "http://x/", "a b", "*.internal", "0x7f000001", "127.1"]:
        with pytest.raises(ValueError):
            Allowlist.parse([bad])
    with pytest.raises(TypeError):
        Allowlist.parse("127.0.0.1")


def test_allowlisted_cidr_permits_literals_including_mapped_form() -> None:
    allow = ["127.0.0.0/8"]
    assert check_url("http://127.0.0.1:8080/", allow).address is not None
    assert check_url("http://[::ffff:127.0.0.1]:8080/", allow).host == "::ffff:7f00:1"
    with pytest.raises(UnsafeWebhookURL):
        check_url("http://10.0.0.1/", allow)
    with pytest.raises(UnsafeWebhookURL):  # numeric tricks stay refused even when allowed
        check_url("http://127.1/", allow)


def _lookup(table: dict[str, list[str]]) -> tuple[Lookup, list[str]]:
    calls: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        calls.append(host)
        return list(table[host])

    return lookup, calls


async def test_resolve_safe_checks_every_address() -> None:
    lookup, calls = _lookup({"mixed.test": ["8.8.8.8", "10.0.0.5"], "ok.test": ["8.8.8.8"]})
    with pytest.raises(UnsafeWebhookURL, match=r"10\.0\.0\.5"):
        await resolve_safe("mixed.test", 80, lookup=lookup)
    assert await resolve_safe("ok.test", 80, lookup=lookup) == ["8.8.8.8"]
    assert calls == ["mixed.test", "ok.test"]  # once per resolution


async def test_resolve_safe_pins_mapped_answers_as_ipv4_and_dedupes() -> None:
    lookup, _ = _lookup({"dup.test": ["8.8.8.8", "::ffff:8.8.8.8", "8.8.8.8"]})
    assert await resolve_safe("dup.test", 443, lookup=lookup) == ["8.8.8.8"]


async def test_resolve_safe_refuses_empty_and_garbage_answers() -> None:
    lookup, _ = _lookup({"none.test": [], "junk.test": ["not-an-ip"]})
    with pytest.raises(UnsafeWebhookURL, match="no addresses"):
        await resolve_safe("none.test", 80, lookup=lookup)
    with pytest.raises(UnsafeWebhookURL, match="non-address"):
        await resolve_safe("junk.test", 80, lookup=lookup)


async def test_hostname_allowlist_trusts_that_name_only() -> None:
    lookup, _ = _lookup({"a.internal": ["10.0.0.5"], "b.internal": ["10.0.0.5"]})
    allow = ["a.internal"]
    assert await resolve_safe("A.Internal.", 80, allow, lookup=lookup) == ["10.0.0.5"]
    with pytest.raises(UnsafeWebhookURL):  # same address, different name
        await resolve_safe("b.internal", 80, allow, lookup=lookup)
    with pytest.raises(UnsafeWebhookURL):  # the address itself, written as a literal
        await resolve_safe("10.0.0.5", 80, allow, lookup=lookup)


async def test_cidr_allowlist_permits_addresses_for_any_name() -> None:
    lookup, _ = _lookup({"x.internal": ["10.0.0.5"], "y.internal": ["10.0.0.5", "10.9.0.1"]})
    allow = ["10.0.0.0/24"]
    assert await resolve_safe("x.internal", 80, allow, lookup=lookup) == ["10.0.0.5"]
    with pytest.raises(UnsafeWebhookURL, match=r"10\.9\.0\.1"):
        await resolve_safe("y.internal", 80, allow, lookup=lookup)


async def test_resolve_safe_uses_the_system_resolver_for_localhost() -> None:
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        await resolve_safe("localhost", 80)
    assert await resolve_safe("localhost", 80, ["127.0.0.0/8", "::1"]) != []


@dataclass
class Listener:
    port: int
    connections: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A plain TCP listener on 127.0.0.1 (and ::1 on the same port when possible)."""
    state = Listener(port=0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writer.close()

    v4 = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    state.servers.append(v4)
    state.port = v4.sockets[0].getsockname()[1]
    try:
        state.servers.append(
            await asyncio.start_server(on_connect, "::1", state.port, family=socket.AF_INET6)
        )
    except OSError:
        pass
    yield state
    for server in state.servers:
        server.close()
        await server.wait_closed()


MATRIX = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://LOCALHOST.:{port}/",
    "http://0x7f000001:{port}/",
    "http://2130706433:{port}/",
    "http://127.1:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[::1]:{port}/",
    "http://[::]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://0:{port}/",
    "http://user@127.0.0.1:{port}/",
    "http://example.com@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/",
    "ftp://127.0.0.1:{port}/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET%20/",
]


async def test_ssrf_matrix_never_connects(listener: Listener) -> None:
    async with WebhookSender(
        secret=generate_secret(), max_attempts=3, sleep=_no_sleep, timeout_s=2
    ) as sender:
        for template in MATRIX:
            url = template.format(port=listener.port)
            result = await sender.deliver(url, "job.completed", {"id": 1})
            assert not result.delivered, url
            assert result.attempts <= 1, url  # refused, never retried
            assert result.error, url
    assert listener.connections == 0


async def _no_sleep(delay: float) -> None:
    raise AssertionError(f"an unsafe URL must not be retried (asked to sleep {delay})")
