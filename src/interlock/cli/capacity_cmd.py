"""``interlock report capacity``: the weekly capacity review from the ledger.

Utilisation per deployment (in flight by Little's law against ``max_concurrency``) and
per gateway replica (peak req/s against ``launch.replica_rps``), headroom against each
deployment's ``rpm``/``tpm`` at the observed peak minute, and the replicas and quota the
peak needs at 2×, 3× and 10×. Reads the database directly; the server need not run.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from interlock.cli.common import (
    cli_settings,
    database_options,
    since_option,
    until_option,
    window,
    window_line,
    with_engine,
)

__all__ = ["report_capacity"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | int | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


@click.command("capacity")
@database_options
@since_option
@until_option
@click.option(
    "--replicas",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Gateway replicas that served the window.",
)
@click.option(
    "--replica-rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests/s one replica sustains (default: launch.replica_rps).",
)
@click.option(
    "--multiple",
    "multiples",
    type=click.FloatRange(min=0, min_open=True),
    multiple=True,
    help="Growth multiples to size for (default: 1, 2, 3, 10).",
)
@click.option("--json", "as_json", is_flag=True, default=False)
def report_capacity(
    config: str | None,
    since: str,
    until: str | None,
    replicas: int,
    replica_rps: float | None,
    multiples: tuple[float, ...],
    as_json: bool,
) -> None:
    """Utilisation, quota headroom at the peak minute, and replicas needed at 2×/3×/10×."""
    from interlock.capacity import CapacityParams, capacity_report, read_calls
    from interlock.capacity.report import DEFAULT_MULTIPLES

    settings = cli_settings(config)
    start, end = window(since, until)

    async def go(engine: Any) -> Any:
        return await read_calls(engine, start, end)

    calls = with_engine(settings, go)
    params = CapacityParams.from_settings(
        settings,
        replicas=replicas,
        replica_rps=replica_rps,
        multiples=tuple(sorted(set(multiples))) or DEFAULT_MULTIPLES,
    )
    rep = capacity_report(calls, settings, params)
    if as_json:
        click.echo(orjson.dumps(rep.to_json(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(window_line(start, end) + f"  ({rep.requests:,} requests)")
    g = rep.gateway
    click.echo(
        f"\ngateway: {g.replicas} replica(s) × {g.replica_rps:,.0f} req/s; "
        f"average {g.avg_rps:,.2f} req/s, peak minute {g.peak_rps:,.2f} req/s "
        f"({g.peak_cpu_rps:,.2f} CPU-weighted)"
    )
    click.echo(
        f"  utilisation per replica at the peak: {_pct(g.utilisation_per_replica)}; "
        f"in flight per replica: {g.in_flight_peak_per_replica:,.1f}"
    )
    click.echo("  replicas needed: " + ", ".join(f"{k} {v}" for k, v in g.replicas_needed.items()))
    headers = [
        "DEPLOYMENT",
        "REQUESTS",
        "LAT MS",
        "IN FLIGHT",
        "CAPACITY",
        "UTIL",
        "PEAK RPM",
        "RPM LIMIT",
        "RPM HEADROOM",
        "PEAK TPM",
        "TPM LIMIT",
        "TPM HEADROOM",
        "FITS AT",
    ]
    rows = [
        [
            d.name,
            _num(d.requests),
            _num(d.mean_latency_ms, 1),
            _num(d.in_flight_peak, 2),
            _num(d.capacity),
            _pct(d.utilisation),
            _num(d.peak_rpm),
            _num(d.rpm_limit),
            _pct(d.rpm_headroom),
            _num(d.peak_tpm),
            _num(d.tpm_limit),
            _pct(d.tpm_headroom),
            " ".join(k for k, ok in d.fits_at.items() if ok) or "none",
        ]
        for d in rep.deployments
        if d.requests or d.rpm_limit or d.tpm_limit
    ]
    click.echo("")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    click.echo(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for r in rows:
        click.echo(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
