"""``interlock simulate``: recorded (or synthetic) traffic at N× against a candidate
configuration, predicted by the discrete-event model in :mod:`interlock.simulate`.

Reads the ledger of the configuration's database (or ``--ledger-config``'s) directly; no
gateway or provider is started, so asking "what happens at 10×" costs seconds, not a
load test, and never touches a paid provider. ``--baseline-config`` runs the same draws
against a second configuration and prints the difference: "what does this change save".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
import yaml

from interlock.cli.common import cli_settings, config_option, load_prices, window, with_engine
from interlock.settings import Settings

__all__ = ["simulate"]

_ROWS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("scale", "SCALE", lambda r: f"{r['scale']:g}x"),
    ("requests", "REQUESTS", lambda r: f"{r['requests']:,}"),
    ("http_429", "429s", lambda r: f"{r['http_429']:,}"),
    ("p50", "P50 MS", lambda r: _ms(r["latency_ms"]["p50"])),
    ("p95", "P95 MS", lambda r: _ms(r["latency_ms"]["p95"])),
    ("p99", "P99 MS", lambda r: _ms(r["latency_ms"]["p99"])),
    ("cost", "COST/DAY", lambda r: f"${float(r['cost_per_day_usd']):,.2f}"),
    ("saved", "CACHE SAVED/DAY", lambda r: f"${float(r['cache_saved_per_day_usd']):,.2f}"),
    (
        "queue",
        "QUEUE P95/MAX",
        lambda r: f"{r['queue_depth']['p95']:g}/{r['queue_depth']['max']:g}",
    ),
    ("replicas", "REPLICAS", lambda r: f"{r['replicas_needed']}"),
]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


@click.command()
@config_option("The candidate configuration (default: $INTERLOCK_CONFIG, ./interlock.yaml).")
@click.option(
    "--ledger-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="The configuration whose database holds the recorded ledger (default: --config).",
)
@click.option(
    "--baseline-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also simulate this configuration on the same draws and print the difference.",
)
@click.option(
    "--profile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A synthetic traffic profile (YAML) instead of the ledger.",
)
@click.option(
    "--since", default="1d", show_default=True, help="Ledger window start: 1h, 1d, 7d or ISO."
)
@click.option("--until", default=None, help="Ledger window end (exclusive; ISO, UTC).")
@click.option(
    "--scale",
    "scales",
    type=click.FloatRange(min=0, min_open=True),
    multiple=True,
    help="Traffic multiple, repeatable (default: 1 and 10).",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Gateway replicas (one core each) the candidate runs on.",
)
@click.option(
    "--replica-rps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests/s one replica sustains (default: launch.replica_rps).",
)
@click.option(
    "--cache-hit-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Replace the recorded cache outcomes by this hit rate (cached routes only).",
)
@click.option(
    "--latency",
    "latencies",
    multiple=True,
    metavar="DEP=TTFT_MS:TOKENS_PER_S",
    help="A deployment's latency instead of the one fitted from the ledger.",
)
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Price table file (default: the packaged one).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the full result here ('-': stdout instead of the table).",
)
def simulate(
    config: str | None,
    ledger_config: str | None,
    baseline_config: str | None,
    profile: str | None,
    since: str,
    until: str | None,
    scales: tuple[float, ...],
    replicas: int,
    replica_rps: float | None,
    cache_hit_rate: float | None,
    latencies: tuple[str, ...],
    prices_path: str | None,
    seed: int,
    json_path: str | None,
) -> None:
    """Predict cost/day, cache savings, p95, 429s, queue depth, replicas and provider
    quota for recorded or synthetic traffic at N× against a candidate configuration."""
    from interlock.simulate import SimOptions, compare, predict
    from interlock.simulate.routing import candidate_from_settings
    from interlock.simulate.service import parse_latency

    settings = cli_settings(config)
    demands, span, models, hit_model, source = _traffic(
        settings, ledger_config, profile, since, until
    )
    for spec in latencies:
        try:
            name, model = parse_latency(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--latency") from None
        models[name] = model
    table = load_prices(prices_path)
    launch = settings.launch
    base_opts = SimOptions(
        replicas=replicas,
        replica_rps=replica_rps or launch.replica_rps,
        stream_cost=launch.stream_cost,
        target_utilisation=launch.target_utilisation,
        cache_hit_rate=cache_hit_rate,
        seed=seed,
    )

    def run(cfg: Settings) -> list[dict[str, Any]]:
        cand = candidate_from_settings(cfg, table, replicas)
        return [
            predict(demands, span, cand, models, hit_model, _at(base_opts, s))
            for s in (scales or (1.0, 10.0))
        ]

    results = run(settings)
    doc: dict[str, Any] = {
        "schema": "interlock.simulate/1",
        "source": source,
        "span_s": round(span, 3),
        "recorded_requests": len(demands),
        "latency_models": {n: m.to_json() for n, m in sorted(models.items())},
        "results": results,
    }
    if baseline_config is not None:
        baseline = run(cli_settings(baseline_config))
        doc["baseline"] = baseline
        doc["difference"] = [compare(b, c) for b, c in zip(baseline, results, strict=True)]
    if json_path == "-":
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    _print(doc)


def _at(opts: Any, scale: float) -> Any:
    from dataclasses import replace

    return replace(opts, scale=scale)


def _traffic(
    settings: Settings,
    ledger_config: str | None,
    profile: str | None,
    since: str,
    until: str | None,
) -> tuple[Any, float, dict[str, Any], Any, str]:
    from interlock.capacity import read_calls
    from interlock.simulate import demands_from_calls, fit_latency_models, synthetic
    from interlock.simulate.demand import ProfileError
    from interlock.simulate.service import LatencyModel

    if profile is not None:
        data = yaml.safe_load(Path(profile).read_text()) or {}
        try:
            demands, span = synthetic(data)
        except ProfileError as exc:
            raise click.ClickException(f"{profile}: {exc}") from None
        models: dict[str, Any] = {}
        for name, lat in (data.get("latency") or {}).items():
            tps = float(lat.get("tokens_per_s", 0))
            models[name] = LatencyModel(
                float(lat.get("ttft_ms", 0)), 1000 / tps if tps else 0.0, source="profile"
            )
        _, hit = fit_latency_models([])
        return demands, span, models, hit, f"profile {profile}"
    start, end = window(since, until)
    source_settings = cli_settings(ledger_config) if ledger_config else settings

    async def go(engine: Any) -> Any:
        return await read_calls(engine, start, end)

    calls = with_engine(source_settings, go)
    if not calls:
        raise click.ClickException("no ledger rows in the window: widen --since or give --profile")
    demands, span = demands_from_calls(calls)
    models, hit = fit_latency_models(calls)
    return demands, span, models, hit, f"ledger {start.isoformat(timespec='seconds')}.."


def _print(doc: dict[str, Any]) -> None:
    click.echo(
        f"traffic: {doc['source']} — {doc['recorded_requests']:,} requests over "
        f"{doc['span_s']:,.0f} s"
    )
    _table(doc["results"])
    last = doc["results"][-1]
    click.echo(f"\nprovider quota at {last['scale']:g}x (peak minute; needed = unconstrained):")
    rows = [
        [
            name,
            f"{d.get('peak_rpm', 0):,.0f}",
            _opt(d.get("rpm_limit")),
            f"{d.get('quota_needed', {}).get('rpm', 0):,.0f}",
            f"{d.get('peak_tpm', 0):,.0f}",
            _opt(d.get("tpm_limit")),
            f"{d.get('quota_needed', {}).get('tpm', 0):,.0f}",
        ]
        for name, d in sorted(last["deployments"].items())
    ]
    _grid(["DEPLOYMENT", "RPM", "RPM LIMIT", "RPM NEEDED", "TPM", "TPM LIMIT", "TPM NEEDED"], rows)
    if "difference" in doc:
        click.echo("\ncandidate − baseline:")
        for r, diff in zip(doc["results"], doc["difference"], strict=True):
            click.echo(
                f"  {r['scale']:g}x: cost/day {diff['cost_per_day_usd']} USD, "
                f"429s {diff['http_429']:+d}, p95 {diff['p95_ms']} ms, "
                f"replicas {diff['replicas_needed']:+d}"
            )


def _opt(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _table(results: list[dict[str, Any]]) -> None:
    _grid([h for _, h, _ in _ROWS], [[fn(r) for _, _, fn in _ROWS] for r in results])


def _grid(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for r in rows:
        click.echo("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
