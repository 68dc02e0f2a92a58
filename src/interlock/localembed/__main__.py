"""``python -m interlock.localembed``: serve all-MiniLM-L6-v2 on /v1/embeddings.

Prints one line, ``interlock local embeddings listening on http://HOST:PORT``, once
the model is loaded and the port bound; serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from interlock.localembed import READY_PREFIX
from interlock.localembed.model import MiniLM
from interlock.localembed.server import create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m interlock.localembed")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--max-batch", type=int, default=64, help="1 turns micro-batching off")
    p.add_argument("--max-wait-ms", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    model = await asyncio.to_thread(MiniLM, args.threads)
    await asyncio.to_thread(model.encode, ["warm up"])
    app = create_app(model, max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_address=True)
    await site.start()
    port = args.port
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            port = int(addr[1])
            break
    host = f"[{args.host}]" if ":" in args.host else args.host
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # Ready only once a SIGTERM is handled: a parent that stops it right after the line
    # gets a clean shutdown, not the default action (killed by the signal).
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    # the model's one "loaded in N s" line goes to stderr (the gateway's log); no bars
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    embed_log = logging.getLogger("interlock.localembed")
    embed_log.addHandler(handler)
    embed_log.setLevel(logging.INFO)
    embed_log.propagate = False
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
