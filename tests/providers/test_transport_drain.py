"""UpstreamStream.drain: what already arrived from the upstream, taken without waiting.

Over a real socket: a small aiohttp server streams a few events and then either holds
the connection open or breaks it; the gateway's transport takes what arrived unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from interlock.providers.base import UpstreamCall
from interlock.providers.transport import Timeouts, Transport, UpstreamStream

EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(3)]


async def _serve(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    for event in EVENTS:
        await resp.write(event)
    if request.query.get("then") == "break":
        assert request.transport is not None
        request.transport.abort()  # the upstream breaks off mid-stream
        return resp
    for _ in range(500):  # still generating: the stream stays open until the client leaves
        if request.transport is None or request.transport.is_closing():
            break
        await asyncio.sleep(0.01)
    return resp


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/stream", _serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.start()
    yield transport
    await transport.close()


async def _open(transport: Transport, url: str) -> UpstreamStream:
    call = UpstreamCall("GET", url, {}, b"", stream=True)
    return await transport.open(call, Timeouts(), "test")


async def _until(done: Callable[[], bool]) -> None:
    """Wait (at most 2 s) until ``done()``: the socket's bytes arrive in their own time."""
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)


async def test_drain_takes_what_arrived_from_a_live_stream(
    base_url: str, transport: Transport
) -> None:
    stream = await _open(transport, f"{base_url}/stream")
    size = sum(map(len, EVENTS))
    await _until(lambda: stream._resp.content.total_bytes >= size or stream.ended)
    assert not stream.ended  # the upstream is still sending: the gateway hangs up
    assert stream.drain() == b"".join(EVENTS)
    assert stream.drain() == b""  # taken once
    stream.close()


async def test_drain_takes_what_arrived_before_the_upstream_broke_off(
    base_url: str, transport: Transport
) -> None:
    stream = await _open(transport, f"{base_url}/stream?then=break")
    await _until(lambda: stream.ended)
    assert stream.ended
    # aiohttp's own readers raise the failure first and would drop these bytes.
    assert stream.drain() == b"".join(EVENTS)
    stream.close()


async def test_a_broken_stream_relays_what_arrived_before_the_error(
    base_url: str, transport: Transport
) -> None:
    stream = await _open(transport, f"{base_url}/stream?then=break")
    await _until(lambda: stream.ended)
    got = b""
    with pytest.raises(Exception, match="connection failed mid-stream"):
        async for data in stream.chunks():
            got += data
    assert got == b"".join(EVENTS)
    stream.close()
