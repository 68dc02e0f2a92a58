"""The only owner of the upstream HTTP client.

One pooled :class:`aiohttp.ClientSession` per process (measured ~10x the throughput of
httpx for this relay pattern here, see docs/benchmarks.md). Every network failure is
turned into an :mod:`interlock.errors` upstream error whose message names the provider
but never the URL, the key or the library's own text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from interlock.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
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

    async def rest(self, until: float) -> AsyncIterator[bytes]:
        """What is still to come, until the response ends, breaks off or ``until`` (the
        event loop's clock) passes; stops quietly at any of them (:attr:`ended` tells
        whether the upstream ended it). For an attempt the gateway abandoned: it reads the
        answer the provider bills for."""
        content = self._resp.content
        while True:
            try:
                async with asyncio.timeout_at(until):
                    data = await content.readany()
            except (TimeoutError, aiohttp.ClientError, OSError):
                rest = self.drain()
                if rest:
                    yield rest
                return
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


@dataclass(slots=True)
class _Progress:
    """How far a kept exchange got (see :meth:`Transport.request_kept`)."""

    status: int | None = None  # set when the response's status and headers arrived
    hung: bool = False  # its bound ran out before it ended

    @property
    def maybe_billed(self) -> bool:
        """Whether an exchange that failed may still have been billed: it hung (the
        provider may be generating), or a successful answer broke off while it arrived
        (the provider generated it before sending it)."""
        return self.hung or (self.status is not None and self.status < 300)


class PendingReply:
    """A non-streamed exchange its caller stopped waiting for, still running to its bound."""

    __slots__ = ("_progress", "_task")

    def __init__(self, task: asyncio.Future[UpstreamReply], progress: _Progress) -> None:
        self._task = task
        self._progress = progress

    @property
    def failure(self) -> UpstreamError | None:
        """What already ended the exchange (it is pending only to be charged), if it did."""
        if not self._task.done() or self._task.cancelled():
            return None
        err = self._task.exception()
        return err if isinstance(err, UpstreamError) else None

    async def answer(self) -> UpstreamReply | None:
        """The reply once it ends; None if it ended unanswered where the provider may have
        billed it (see :attr:`_Progress.maybe_billed`); raises the upstream error else."""
        try:
            return await self._task
        except (UpstreamTimeout, UpstreamUnavailable):
            if self._progress.maybe_billed:
                return None
            raise


class PendingStream:
    """A streamed request its caller stopped waiting for before the response headers."""

    __slots__ = ("_progress", "_task")

    def __init__(self, task: asyncio.Future[UpstreamStream], progress: _Progress) -> None:
        self._task = task
        self._progress = progress

    async def stream(self) -> UpstreamStream | None:
        """The response once its headers arrive; None if the bound ran out first; raises
        the upstream error if it failed before any response."""
        try:
            return await self._task
        except UpstreamTimeout:
            if self._progress.hung:
                return None
            raise


class Transport:
    def __init__(self, *, limit: int = 0, limit_per_host: int = 0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        self._connect_timeouts: dict[float, aiohttp.ClientTimeout] = {}

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

    def _send(
        self, call: UpstreamCall, timeout: aiohttp.ClientTimeout
    ) -> Awaitable[aiohttp.ClientResponse]:
        """The one place a call goes out: every exchange below sends through it."""
        return self.session.request(
            call.method,
            call.url,
            data=call.body if call.body else None,
            headers=call.headers,
            timeout=timeout,
            allow_redirects=False,
        )

    async def open(self, call: UpstreamCall, timeouts: Timeouts, provider: str) -> UpstreamStream:
        """Send ``call`` and return once the response headers arrived."""
        try:
            async with asyncio.timeout(timeouts.first_byte_s):
                resp = await self._send(call, self._connect_timeout(timeouts))
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

    def _connect_timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        # Only the connect phase has aiohttp's own timeouts: the rest is timed by the
        # caller (a stream's first byte and idle gaps), or must not cut the exchange at
        # all (a kept exchange the caller stopped waiting for).
        ct = self._connect_timeouts.get(t.connect_s)
        if ct is None:
            ct = self._connect_timeouts[t.connect_s] = aiohttp.ClientTimeout(
                total=None, connect=t.connect_s, sock_connect=t.connect_s
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
                resp = await self._send(call, self._client_timeout(timeouts))
                try:
                    body = await resp.read()
                finally:
                    resp.release()
        except TimeoutError:
            raise UpstreamTimeout(f"provider {provider} did not answer in time") from None
        except (aiohttp.ClientError, OSError):
            raise UpstreamUnavailable(f"could not reach provider {provider}") from None
        return UpstreamReply(resp.status, resp.headers, body)

    # -- kept exchanges: the caller stops waiting, the exchange goes on -------------------
    #
    # A provider finishes (and bills) a non-streamed answer even after its caller hung up,
    # so an attempt the gateway gives up on is not cut: it runs on in the background until
    # it ends or its bound (``until``, the event loop's clock) runs out, and the caller
    # learns what it cost (routing/executor.py, streaming.py; gateway/abandoned.py).

    async def _kept(
        self,
        call: UpstreamCall,
        t: Timeouts,
        provider: str,
        until: float,
        progress: _Progress,
        *,
        read: bool,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """Send ``call`` within the kept exchange's one bound, ``until``: the response once
        its headers arrived, with ``read`` its whole body too (the connection released).
        ``progress`` notes how far it got: a timeout at the bound is a hang."""
        bound = asyncio.timeout_at(until)
        body = b""
        try:
            async with bound:
                resp = await self._send(call, self._connect_timeout(t))
                progress.status = resp.status
                if read:
                    try:
                        body = await resp.read()
                    finally:
                        resp.release()
        except TimeoutError:
            progress.hung = bound.expired()
            raise UpstreamTimeout(f"provider {provider} did not answer in time") from None
        except (aiohttp.ClientError, OSError):
            raise UpstreamUnavailable(f"could not reach provider {provider}") from None
        return resp, body

    async def _exchange(
        self, call: UpstreamCall, t: Timeouts, provider: str, until: float, progress: _Progress
    ) -> UpstreamReply:
        resp, body = await self._kept(call, t, provider, until, progress, read=True)
        return UpstreamReply(resp.status, resp.headers, body)

    async def request_kept(
        self, call: UpstreamCall, timeouts: Timeouts, provider: str, until: float
    ) -> UpstreamReply | PendingReply:
        """:meth:`request`, except that when the caller's wait runs out (no response within
        ``timeouts.first_byte_s``, no body ``timeouts.idle_s`` after it, no whole answer
        within ``timeouts.total_s``) the exchange is not cut: it is returned as a
        :class:`PendingReply` that runs on until ``until``. An exchange that already hung
        to ``until`` comes back pending too (the provider may have billed it); other
        failures raise as :meth:`request`'s do."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        progress = _Progress()
        task = loop.create_task(self._exchange(call, timeouts, provider, until, progress))
        try:
            await _until_done(task, min(timeouts.first_byte_s, timeouts.total_s))
            if not task.done() and progress.status is not None:
                # The answer is arriving: its body gets idle_s, within the total time.
                now = loop.time()
                await _until_done(task, min(timeouts.idle_s, start + timeouts.total_s - now))
        except BaseException:
            task.cancel()  # the caller itself is cancelled (shutdown): nobody will record it
            raise
        if not task.done() or (task.exception() is not None and progress.maybe_billed):
            return PendingReply(task, progress)
        return task.result()

    async def _open(
        self, call: UpstreamCall, t: Timeouts, provider: str, until: float, progress: _Progress
    ) -> UpstreamStream:
        resp, _ = await self._kept(call, t, provider, until, progress, read=False)
        return UpstreamStream(resp, t, provider)

    async def open_kept(
        self, call: UpstreamCall, timeouts: Timeouts, provider: str, until: float
    ) -> UpstreamStream | PendingStream:
        """:meth:`open`, except that when the headers do not arrive within
        ``timeouts.first_byte_s`` the request is not cut: it comes back as a
        :class:`PendingStream` that waits for them until ``until``."""
        loop = asyncio.get_running_loop()
        progress = _Progress()
        task = loop.create_task(self._open(call, timeouts, provider, until, progress))
        try:
            await _until_done(task, timeouts.first_byte_s)
        except BaseException:
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            task.cancel()
            raise
        if not task.done() or (task.exception() is not None and progress.hung):
            return PendingStream(task, progress)
        return task.result()


async def _until_done(task: asyncio.Future[Any], within_s: float) -> None:
    """Wait until ``task`` ends or ``within_s`` passes; never cancels ``task``. (What
    ``asyncio.wait`` does for one task, for a fraction of its cost: this runs on every
    non-streamed upstream call.)"""
    if task.done():
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(max(0.0, within_s), wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
