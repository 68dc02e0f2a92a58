"""Connect to the addresses that were checked, and to nothing else.

Checking a hostname's addresses and then letting the HTTP client resolve it again is
the classic DNS-rebinding hole: the second answer can be ``127.0.0.1``. So the webhook
client's connector gets :class:`PinnedResolver`, which never asks DNS. Around each
request :func:`pinned` puts the checked ``(host, addresses)`` in a context variable;
the resolver hands back exactly those and refuses any other name. The URL keeps its
hostname, so the ``Host`` header and the TLS SNI/certificate check still use it.

A context variable rather than shared state, because concurrent deliveries run in
their own tasks and aiohttp resolves inside the requesting task (or a child task,
which copies the context). The connector must have ``use_dns_cache=False`` — its cache
would otherwise answer later requests from an earlier pin without consulting us.
IP-literal URLs never reach a resolver in aiohttp; they were classified directly.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from aiohttp.abc import AbstractResolver

from interlock.webhooks.ssrf import normalise_host

if TYPE_CHECKING:  # a TypedDict only in aiohttp >= 3.10; at runtime a plain dict does
    from aiohttp.abc import ResolveResult

_PIN: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar(
    "interlock_webhook_pin", default=None
)


@contextmanager
def pinned(host: str, addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ``host`` resolves to ``addresses`` only (and nothing else resolves)."""
    token = _PIN.set((normalise_host(host), tuple(addresses)))
    try:
        yield
    finally:
        _PIN.reset(token)


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only from the current :func:`pinned` block."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pin = _PIN.get()
        if pin is None or pin[0] != normalise_host(host) or not pin[1]:
            # Fail closed: an unchecked name never gets an address.
            raise OSError("webhook client refused to resolve an unchecked host")
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": flags,
            }
            for address in pin[1]
        ]

    async def close(self) -> None:
        return None
