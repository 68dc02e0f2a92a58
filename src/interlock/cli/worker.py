"""``interlock worker``: a job worker pool as its own process, apart from ``serve``.

It builds the same Gateway as ``serve`` (same configuration, same request path) and
runs only the pool. SIGTERM/SIGINT drain it: no new leases, running jobs get
``jobs.drain_timeout_s`` to finish, the rest go back to the queue; the exit status is 0.
A SIGKILLed worker loses nothing either: its leases run out and other workers take the
jobs back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

import click

from interlock.cli.common import config_option
from interlock.settings import ConfigError, Settings

if TYPE_CHECKING:
    from interlock.gateway import Gateway

READY_PREFIX = "interlock worker running"


@click.command()
@config_option(
    "Configuration file (default: $INTERLOCK_CONFIG, ./interlock.yaml, or the embedded default)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Jobs run at once (default from config: jobs.concurrency).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on 127.0.0.1:PORT (the worker has no HTTP API).",
)
def worker(config: str | None, concurrency: int | None, metrics_port: int | None) -> None:
    """Run a job worker pool (jobs submitted to POST /v1/jobs)."""
    settings = _resolve(config)
    code = asyncio.run(_run(settings, concurrency, metrics_port))
    sys.exit(code)


def _resolve(config: str | None) -> Settings:
    from interlock.cli.serve import (
        config_path,
        resolve,
        start_simulator,
        startup_check,
        with_simulator,
    )
    from interlock.settings import parse_settings

    env = dict(os.environ)
    try:
        settings, data, source = resolve(config_path(config, env), env)
        startup_check(settings, source)  # the worker signs webhooks: same refusals as serve
        if settings.simulator.enabled:
            # The embedded default: this worker gets its own simulated provider.
            _proc, sim_url = start_simulator(settings)
            settings = parse_settings(with_simulator(data, sim_url), source, env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


async def _run(settings: Settings, concurrency: int | None, metrics_port: int | None) -> int:
    from interlock.api.job_runner import JobRuntime
    from interlock.gateway import Gateway

    gw = Gateway(settings)
    await gw.start()
    rt = JobRuntime(gw)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await rt.start(run_pool=True, concurrency=concurrency)
        if metrics_port is not None:
            _serve_metrics(gw, metrics_port)
        assert rt.pool is not None
        click.echo(
            f"{READY_PREFIX}: id {rt.pool.id}, concurrency {rt.pool.config.concurrency}, "
            f"queue {type(rt.queue).__name__}"
        )
        sys.stdout.flush()
        await stop.wait()
        click.echo("interlock worker: draining")
        sys.stdout.flush()
    finally:
        await rt.close()
        await gw.close()
    click.echo("interlock worker: stopped")
    return 0


def _serve_metrics(gw: Gateway, port: int) -> None:
    from prometheus_client import start_http_server

    registry = gw.metrics.registry
    if registry is None:  # multiprocess mode: the files are aggregated by serve's /metrics
        return
    start_http_server(port, addr="127.0.0.1", registry=registry)
