"""Streaming responses: SSE passthrough chunk by chunk, cancelled when the client leaves.

The producer runs as its own task next to a watcher of the ASGI ``receive`` channel;
when the client disconnects the watcher cancels the producer, whose cleanup closes the
upstream connection, so the provider stops generating (and billing) promptly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from interlock.api.http import Ctx


async def run_until_disconnect(ctx: Ctx, produce: Callable[[], Awaitable[None]]) -> bool:
    """Run ``produce``; return False if the client disconnected first."""

    async def watch() -> None:
        while True:
            msg = await ctx.receive()
            if msg["type"] == "http.disconnect":
                return

    producer = asyncio.ensure_future(produce())
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((producer, watcher), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        producer.cancel()
        watcher.cancel()
        raise
    if producer.done():
        watcher.cancel()
        producer.result()  # re-raise what the producer raised
        return True
    producer.cancel()
    try:
        await producer
    except asyncio.CancelledError:
        pass
    return False
