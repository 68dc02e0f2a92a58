"""The cost of a kept non-streamed exchange (Transport.request_kept) over the plain one.

Every non-streamed upstream call of a request runs as a task of its own, so that an
attempt the gateway stops waiting for can go on and be charged (docs/decisions.md,
"Abandoned attempts run to their end and are charged"). This measures what that costs
per call against a loopback aiohttp server in the same process: sequential calls, the
two variants interleaved round by round, the median of the rounds.

    .venv/bin/python bench/kept_exchange.py [--calls 2000] [--rounds 11]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from aiohttp import web

from interlock.providers.base import UpstreamCall
from interlock.providers.transport import Timeouts, Transport


async def main(calls: int, rounds: int) -> None:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"ok": 1}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/x", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    transport = Transport()
    await transport.start()
    call = UpstreamCall(
        "POST", f"http://127.0.0.1:{port}/x", {"content-type": "application/json"}, b'{"a": 1}'
    )
    timeouts = Timeouts(first_byte_s=30, total_s=60)
    loop = asyncio.get_running_loop()
    per_call: dict[str, list[float]] = {"request": [], "request_kept": []}
    try:
        for _ in range(rounds):
            for name, times in per_call.items():
                started = time.perf_counter()
                for _ in range(calls):
                    if name == "request":
                        await transport.request(call, timeouts, "bench")
                    else:
                        await transport.request_kept(call, timeouts, "bench", loop.time() + 60)
                times.append((time.perf_counter() - started) / calls * 1e6)
    finally:
        await transport.close()
        await runner.cleanup()
    for name, times in per_call.items():
        print(f"{name:13s} median {statistics.median(times):7.1f} us/call  "
              f"rounds {[round(t) for t in times]}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
