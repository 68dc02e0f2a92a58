"""The only owner of the upstream HTTP client.

One pooled :class:`aiohttp.ClientSession` per process (measured ~10x the throughput of
httpx for this relay pattern here, see docs/benchmarks.md). Every network failure is
turned into an :mod:`interlock.errors` upstream error whose message names the provider
but never the URL, the key or the library's own text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from interlock.errors import UpstreamTimeout, UpstreamUnavailable
from interlock.providers.base import UpstreamCall


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    first_byte_s: float = 60.0
    idle_s: float = 60.0
    total_s: float = 600.0


@dataclass(slots=True)
class UpstreamReply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class UpstreamStream:
    """An open streamed response; iterate :meth:`chunks`, always :meth:`close`."""

    __slots__ = ("_provider", "_resp", "_timeouts", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts, provider: str) -> None:
        self._resp = resp
        self._timeouts = timeouts
        self._provider = provider
        self.status = resp.status
        self.headers = resp.headers

    async def read_all(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeouts.idle_s):
                return await self._resp.read()
        except TimeoutError:
            raise UpstreamTimeout(f"provider {self._provider} stopped responding") from None
        except aiohttp.ClientError:
            raise UpstreamUnavailable(f"provider {self._provider} connection failed") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        idle = self._timeouts.idle_s
        while True:
            try:
                async with asyncio.timeout(idle):
                    data = await content.readany()
            except TimeoutError:
                raise UpstreamTimeout(
                    f"provider {self._provider} stream was idle for more than {idle:g}s"
                ) from None
            except aiohttp.ClientError:
                # What arrived before the connection broke is relayed (and charged) first.
                rest = self.drain()
                if rest:
                    yield rest
                raise UpstreamUnavailable(
                    f"provider {self._provider} connection failed mid-stream"
                ) from None
            if not data:
                return
            yield data

    @property
    def ended(self) -> bool:
        """Whether the upstream ended the response: all of it arrived, or it broke off."""
        content = self._resp.content
        return content.is_eof() or content.exception() is not None

    def drain(self) -> bytes:
        """What has already arrived and was not read yet, without waiting for more.

        For accounting when the gateway hangs up: the provider billed these bytes. Taken
        even when the connection has since failed (aiohttp's public readers raise the
        failure first and would drop them).
        """
        content = self._resp.content
        take = getattr(content, "_read_nowait", None)  # read_nowait(), minus the raise
        try:
            if take is None or content.exception() is None:
                return content.read_nowait(-1)
            data: bytes = take(-1)
            return data
        except (RuntimeError, TimeoutError, aiohttp.ClientError, OSError):
            # A reader still waiting, or the failure itself: nothing more to take.
            return b""

    def close(self) -> None:
        # Closing (not releasing) an unfinished response drops the connection, which is
        # how the upstream learns that the client went away.
        if not self._resp.closed:
            if self._resp.content.at_eof():
                self._resp.release()
            else:
                self._resp.close()


class Transport:
    def __init__(self, *, limit: int = 0, limit_per_host: int = 0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("transport not started")
        return self._session

    async def open(self, call: UpstreamCall, timeouts: Timeouts, provider: str) -> UpstreamStream:
        """Send ``call`` and return once the response headers arrived."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect_s, sock_connect=timeouts.connect_s
        )
        try:
            async with asyncio.timeout(timeouts.first_byte_s):
                resp = await self.session.request(
                    call.method,
                    call.url,
                    data=call.body if call.body else None,
                    headers=call.headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
        except TimeoutError:
            raise UpstreamTimeout(f"provider {provider} did not answer in time") from None
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout(f"provider {provider} did not answer in time") from None
        except (aiohttp.ClientError, OSError):
            raise UpstreamUnavailable(f"could not reach provider {provider}") from None
        return UpstreamStream(resp, timeouts, provider)

    def _client_timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        ct = self._timeouts.get(t)
        if ct is None:
            ct = self._timeouts[t] = aiohttp.ClientTimeout(
                total=None, connect=t.connect_s, sock_connect=t.connect_s, sock_read=t.first_byte_s
            )
        return ct

    async def request(self, call: UpstreamCall, timeouts: Timeouts, provider: str) -> UpstreamReply:
        """Send ``call`` and read the whole answer, within ``timeouts.total_s``.

        One deadline (``asyncio.timeout``) for the whole exchange; connect and
        first-byte/idle limits are aiohttp's own socket timeouts, built once per
        deployment: this is the non-streaming hot path.
        """
        try:
            async with asyncio.timeout(timeouts.total_s):
                resp = await self.session.request(
                    call.method,
                    call.url,
                    data=call.body if call.body else None,
                    headers=call.headers,
                    timeout=self._client_timeout(timeouts),
                    allow_redirects=False,
                )
                try:
                    body = await resp.read()
                finally:
                    resp.release()
        except TimeoutError:
            raise UpstreamTimeout(f"provider {provider} did not answer in time") from None
        except (aiohttp.ClientError, OSError):
            raise UpstreamUnavailable(f"could not reach provider {provider}") from None
        return UpstreamReply(resp.status, resp.headers, body)
