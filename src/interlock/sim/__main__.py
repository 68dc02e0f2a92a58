"""``python -m interlock.sim``: run the simulated provider.

Prints exactly one line, ``interlock sim listening on http://HOST:PORT``, once bound,
then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from aiohttp import web

from interlock.sim.config import ConfigError, SimConfig
from interlock.sim.server import create_app

__all__ = ["build_config", "build_parser", "main", "parse_args", "run_sim"]


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def run_sim(
    cfg: SimConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the simulator on ``host:port`` (0 = any free port) until ``stop`` is set
    (or forever, until cancelled). ``ready`` receives the base URL once bound."""
    app = create_app(cfg)
    # in-flight requests (e.g. a "timeout" fault) get 2 s to finish on shutdown
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound_port = port
        for addr in runner.addresses:
            if isinstance(addr, tuple) and len(addr) >= 2:
                bound_port = int(addr[1])
                break
        if ready is not None:
            ready(_url(host, bound_port))
        if stop is None:
            stop = asyncio.Event()
        await stop.wait()
    finally:
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m interlock.sim`` (and ``interlock sim``)."""
    parser = argparse.ArgumentParser(
        prog="python -m interlock.sim", description="Interlock's simulated LLM provider."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-s", type=float, default=0.0)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--embedding-dims", type=int, default=256)
    parser.add_argument(
        "--config-json", default=None, help="a JSON object of config keys (overrides the flags)"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_config(args: argparse.Namespace) -> SimConfig:
    cfg = SimConfig(
        seed=args.seed,
        ttft_ms=args.ttft_ms,
        tokens_per_s=args.tokens_per_s,
        output_tokens=args.output_tokens,
        embedding_dims=args.embedding_dims,
    )
    if args.config_json:
        extra = orjson.loads(args.config_json)
        if not isinstance(extra, dict):
            raise ConfigError("--config-json must be a JSON object")
        cfg = cfg.updated(extra)
    # validate the flags the same way the control API does
    return SimConfig().updated(cfg.to_dict())


def _print_ready(url: str) -> None:
    sys.stdout.write(f"interlock sim listening on {url}\n")
    sys.stdout.flush()


async def _serve_until_signalled(cfg: SimConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await run_sim(cfg, host, port, _print_ready, stop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except (ConfigError, orjson.JSONDecodeError) as exc:
        sys.stderr.write(f"interlock sim: invalid configuration: {exc}\n")
        raise SystemExit(2) from exc
    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            pass
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run(_serve_until_signalled(cfg, args.host, args.port))
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        reason = exc.strerror or str(exc)
        sys.stderr.write(
            f"interlock sim: cannot listen on {_url(args.host, args.port)}: {reason}\n"
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
