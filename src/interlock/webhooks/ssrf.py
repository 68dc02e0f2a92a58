"""SSRF guard for webhook URLs: who may Interlock be made to connect to?

A webhook URL is chosen by whoever submits a job, so without this module any tenant
could make the gateway POST to ``http://169.254.169.254/`` (cloud metadata), to Redis on
``127.0.0.1:6379`` or to anything else on the private network. The guard has three
layers, each closing a hole the others leave open:

1. :func:`check_url` — cheap validation at submit time, before any DNS: only http/https,
   no userinfo (``http://user@host/`` is a classic parser-confusion trick), no control
   characters or backslashes, no legacy numeric IPv4 spellings (``0x7f000001``,
   ``2130706433``, ``127.1``, ``0177.0.0.1``: libc reads them all as 127.0.0.1, so
   they are refused outright rather than argued with), and a literal IP is classified
   right away.
2. :func:`resolve_safe` — at delivery time the host is resolved **once** and **every**
   address is classified; one blocked address refuses the URL (a name that mixes public
   and private answers is a rebinding attempt, not a misconfiguration).
3. Pinning (:mod:`interlock.webhooks.pinning`) — the connection then goes to exactly the
   addresses that were checked, so a second DNS answer cannot slip in between check
   and connect (DNS rebinding).

The classifier (:func:`blocked_reason`) names every refused range explicitly, and uses
Python's ``is_global`` only as a backstop for anything the table missed.

The operator allowlist (:class:`Allowlist`) is the one way to reach internal hosts:

* a CIDR (or a bare IP) entry permits *addresses*: any host whose every resolved
  address is public or inside an allowlisted network;
* a hostname entry permits that exact *name* (case-insensitive, trailing dot ignored,
  no wildcards) whatever it resolves to — the operator trusts that name's DNS. It does
  **not** permit other names that happen to resolve to the same address, nor the
  address itself written as a literal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> addresses as strings; the system resolver unless a test injects one.
Lookup = Callable[[str, int], Awaitable[list[str]]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048


class UnsafeWebhookURL(ValueError):
    """A webhook URL Interlock refuses to deliver to. Never worth retrying."""


def _v4(rows: Iterable[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(net), why) for net, why in rows)


def _v6(rows: Iterable[tuple[str, str]]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(net), why) for net, why in rows)


# First match wins, so narrower ranges come before the ranges that contain them.
_V4_BLOCKED = _v4(
    [
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    ]
)

# IPv6 ranges that carry an IPv4 address the packet really goes to: judged by that
# address. Both have legitimate uses (dual-stack sockets; DNS64 in IPv6-only clusters
# answers 64:ff9b::a.b.c.d for every IPv4-only host), so they are not refused wholesale.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_V6_BLOCKED = _v6(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignments"),
        ("2002::/16", "6to4 tunnel"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6)"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

# Characters a libc inet_aton() might read as a number: digits, hex digits, 'x', dots.
_NUMERIC_ISH = re.compile(r"[0-9a-fx.]+")
_HOSTNAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in _MAPPED:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` must not be connected to, or None when it is public.

    Ignores any allowlist; :func:`resolve_safe` applies that first.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, why in _V4_BLOCKED:
            if ip in net4:
                return why
        return None if ip.is_global else "not globally routable"
    if ip.scope_id:
        return "scoped address"
    inner = _embedded_v4(ip)
    if inner is not None:
        inner_why = blocked_reason(inner)
        if inner_why is None:
            return None
        kind = "IPv4-mapped" if ip in _MAPPED else "NAT64"
        return f"{kind} {inner}: {inner_why}"
    for net6, why in _V6_BLOCKED:
        if ip in net6:
            if why == "6to4 tunnel" and ip.sixtofour is not None:
                return f"6to4 tunnel (embeds {ip.sixtofour})"
            return why
    if ip not in _V6_GLOBAL_UNICAST:
        return "outside global unicast (2000::/3)"
    return None if ip.is_global else "not globally routable"


def _effective(ip: IPAddress) -> IPAddress:
    """The address a socket really reaches: ``::ffff:a.b.c.d`` is ``a.b.c.d``."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What libc would read a non-dotted-quad numeric host as (``127.1``), else None."""
    if not _NUMERIC_ISH.fullmatch(host):
        return None
    try:
        packed = socket.inet_aton(host)
    except OSError:
        return None
    return ipaddress.IPv4Address(packed)


def normalise_host(host: str) -> str:
    """Lower-case, without IPv6 brackets or the trailing FQDN dot: the key we compare."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Operator-approved exceptions to the SSRF rules (see the module docstring)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Allowlist | Iterable[str]) -> Allowlist:
        """Build from entries like ``"10.0.0.0/8"``, ``"127.0.0.1"`` or ``"hooks.internal"``."""
        if isinstance(entries, Allowlist):
            return entries
        if isinstance(entries, str):
            raise TypeError("allowlist must be a list of entries, not a single string")
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = normalise_host(raw)
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if _legacy_ipv4(entry) is not None or not _HOSTNAME.fullmatch(entry):
                raise ValueError(f"webhook allowlist entry {raw!r} is not a hostname or CIDR")
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def permits_host(self, host: str) -> bool:
        return normalise_host(host) in self.hosts

    def permits_address(self, ip: IPAddress) -> bool:
        ip = _effective(ip)
        return any(ip.version == net.version and ip in net for net in self.networks)


AllowlistLike = Allowlist | Iterable[str]


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A URL that passed :func:`check_url`; ``host`` is normalised, ``port`` explicit."""

    url: URL
    host: str
    port: int
    address: IPAddress | None  # set when the host is an IP literal

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` — what logs may show (paths and queries carry tokens)."""
        return str(self.url.origin())


def _authority(url: str) -> str:
    rest = url.split("://", 1)[1] if "://" in url else ""
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _refuse_address(ip: IPAddress, allow: Allowlist, host: str) -> None:
    if allow.permits_address(ip):
        return
    why = blocked_reason(ip)
    if why is not None:
        shown = host if host == str(ip) else f"{host} ({ip})"
        raise UnsafeWebhookURL(f"webhook host {shown} is not allowed: {why}")


def check_url(url: str, allow: AllowlistLike = ()) -> WebhookTarget:
    """Validate a webhook URL without touching the network; raise :class:`UnsafeWebhookURL`.

    Run it when the URL is submitted so a bad one is refused to its author at once;
    :meth:`WebhookSender.deliver` runs it again together with :func:`resolve_safe`.
    """
    allowlist = Allowlist.parse(allow)
    if not isinstance(url, str) or not url:
        raise UnsafeWebhookURL("webhook URL must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeWebhookURL(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise UnsafeWebhookURL("webhook URL contains whitespace, control characters or '\\'")
    try:
        parsed = URL(url)
        scheme = parsed.scheme.lower()
        raw_host = parsed.raw_host
        port = parsed.port
    except (ValueError, UnicodeError) as exc:
        raise UnsafeWebhookURL(f"malformed webhook URL: {type(exc).__name__}") from None
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeWebhookURL(f"webhook URL scheme {scheme or '(none)'!r} is not http or https")
    if "@" in _authority(url) or parsed.user is not None or parsed.password is not None:
        raise UnsafeWebhookURL("webhook URL must not contain credentials (user@host)")
    if not raw_host:
        raise UnsafeWebhookURL("webhook URL has no host")
    if "%" in raw_host:
        raise UnsafeWebhookURL("webhook URL must not use an IPv6 zone id")
    if port is None or not 0 < port < 65536:
        raise UnsafeWebhookURL("webhook URL has an invalid port")
    host = normalise_host(raw_host)
    if not host:
        raise UnsafeWebhookURL("webhook URL has no host")
    address: IPAddress | None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
        legacy = _legacy_ipv4(host)
        if legacy is not None:
            raise UnsafeWebhookURL(
                f"webhook host {host!r} is a non-canonical numeric address (reads as {legacy})"
            ) from None
    if address is not None:
        if host != raw_host.lower():
            raise UnsafeWebhookURL(f"webhook host {raw_host!r} is a non-canonical address")
        _refuse_address(address, allowlist, host)
    return WebhookTarget(parsed.with_fragment(None), host, port, address)


async def system_lookup(host: str, port: int) -> list[str]:
    """Resolve with the event loop's getaddrinfo (threaded, so the loop never blocks)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


async def resolve_safe(
    host: str, port: int, allow: AllowlistLike = (), *, lookup: Lookup | None = None
) -> list[str]:
    """Resolve ``host`` once, check every address, return them for pinning.

    Raises :class:`UnsafeWebhookURL` if any address is blocked (and not allowlisted);
    lets ``OSError`` from the lookup through, since a DNS failure may be transient.
    """
    allowlist = Allowlist.parse(allow)
    name = normalise_host(host)
    try:
        literal: IPAddress | None = ipaddress.ip_address(name)
    except ValueError:
        literal = None
        if _legacy_ipv4(name) is not None:
            raise UnsafeWebhookURL(
                f"webhook host {name!r} is a non-canonical numeric address"
            ) from None
    if literal is not None:
        _refuse_address(literal, allowlist, name)
        return [str(_effective(literal))]
    trusted = allowlist.permits_host(name)
    answers = await (lookup or system_lookup)(name, port)
    pinned: list[str] = []
    for answer in answers:
        try:
            ip = _effective(ipaddress.ip_address(answer))
        except ValueError:
            raise UnsafeWebhookURL(f"webhook host {name} resolved to a non-address") from None
        if not trusted:
            _refuse_address(ip, allowlist, name)
        if str(ip) not in pinned:
            pinned.append(str(ip))
    if not pinned:
        raise UnsafeWebhookURL(f"webhook host {name} resolved to no addresses")
    return pinned
