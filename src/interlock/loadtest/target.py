"""Where a load test may go: loopback, or a host the operator named with ``--allow-host``.

A load generator pointed at the wrong URL is a denial-of-service tool (and a bill, if
the URL is a paid provider). So the default is to refuse anything that does not
resolve to loopback addresses only, before a single request is sent.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["TargetRefused", "api_base", "check_target"]


class TargetRefused(ValueError):
    """The URL is not loopback and was not explicitly allowed."""


def _addresses(host: str) -> list[str]:
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None)]
    except socket.gaierror:
        return []


def check_target(url: str, allow_hosts: Iterable[str] = ()) -> str:
    """Return the host of ``url`` if it may be load tested, else raise :class:`TargetRefused`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url!r} is not an http(s) URL")
    host = parts.hostname
    if host.lower() in {h.lower().strip("[]") for h in allow_hosts}:
        return host
    addresses = _addresses(host)
    if not addresses:
        raise TargetRefused(f"cannot resolve {host!r}")
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return host
    raise TargetRefused(
        f"{host} is not a loopback address; a load test against another machine must be "
        f"allowed explicitly with --allow-host {host}"
    )


def api_base(url: str) -> str:
    """The ``/v1`` base the request paths hang off: ``http://h:p`` → ``http://h:p/v1``;
    a URL already ending in ``/v1`` is kept."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"
