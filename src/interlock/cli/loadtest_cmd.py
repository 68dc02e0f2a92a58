"""``interlock loadtest``: open-loop load against an OpenAI-compatible URL, with SLO gates.

Exit status: 0 every objective met, 1 an objective failed (or the run ended with no
successful request), 2 bad usage or a refused target. That makes it a CI step:
``interlock loadtest --rate 200 --duration 60 --slo p95_ms=800 --slo error_rate=0.01``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import orjson

from interlock.cli.common import config_option
from interlock.cli.remote import find_gateway
from interlock.loadtest.html import render_html
from interlock.loadtest.models import DiscoveryError, discover_model
from interlock.loadtest.progress import ProgressBar
from interlock.loadtest.runner import RunConfig, RunResult, default_connections, run
from interlock.loadtest.schedule import Schedule
from interlock.loadtest.slo import SLO_KEYS, Slo, evaluate_slos, parse_slo
from interlock.loadtest.stats import summarise
from interlock.loadtest.target import TargetRefused, api_base, check_target
from interlock.loadtest.workload import (
    Workload,
    WorkloadError,
    load_workload,
    parse_length,
    parse_mix,
    synthetic_workload,
)

__all__ = ["loadtest"]


class _Refused(click.ClickException):
    exit_code = 2


def _slos(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[Slo]:
    try:
        return [parse_slo(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@config_option("The gateway's configuration, to find its URL (and, for that URL only, its "
              "master key when no --api-key is given); default: $INTERLOCK_CONFIG, "
              "./interlock.yaml, or the embedded default.")  # fmt: skip
@click.option("--url", default=None,
              help="Base URL of any OpenAI-compatible API, with or without /v1 (default: "
              "$INTERLOCK_URL, then http://HOST:PORT from the configuration).")  # fmt: skip
@click.option("--rate", type=click.FloatRange(min=0.01, max=100_000), default=10.0, show_default=True,
              help="Arrival rate, requests/s (the rate reached after --ramp-s).")  # fmt: skip
@click.option("--duration", type=click.FloatRange(min=0.05, max=86_400), default=10.0, show_default=True,
              help="Seconds of arrivals (the run always stops: then in-flight requests get --timeout).")  # fmt: skip
@click.option("--requests", "max_requests", type=click.IntRange(min=1), default=None,
              help="Stop after this many requests, if before --duration.")  # fmt: skip
@click.option(
    "--ramp-s",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Ramp linearly to --rate over this long.",
)
@click.option(
    "--start-rate", type=click.FloatRange(min=0), default=0.0, help="Rate at the start of the ramp."
)
@click.option(
    "--arrival", type=click.Choice(["constant", "poisson"]), default="constant", show_default=True
)
@click.option("--workload", "workload_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A YAML mix or a JSONL recording of request bodies (see docs/launch.md).")  # fmt: skip
@click.option("--model", default=None,
              help="Model (alias) for chat and stream requests (default: the first model the "
              "target's /v1/models lists that answers a one-token chat probe).")  # fmt: skip
@click.option("--embed-model", default=None,
              help="Model for embeddings requests (default: the first listed model that "
              "answers an embeddings probe).")  # fmt: skip
@click.option("--mix", "mix_text", default="chat=1", show_default=True,
              help="Synthetic mix, e.g. chat=0.7,stream=0.2,embeddings=0.1.")  # fmt: skip
@click.option("--prompt-tokens", default="64", show_default=True,
              help="N, uniform:MIN:MAX, normal:MEAN:STD or lognormal:MEAN:SIGMA.")  # fmt: skip
@click.option("--max-tokens", default="32", show_default=True, help="Output length, same forms.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--api-key",
    default=None,
    help="Bearer key (default: $INTERLOCK_API_KEY or $OPENAI_API_KEY; with neither and no "
    "--url/$INTERLOCK_URL, the configuration's admin key).",
)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1, max=3600), default=30.0,
              show_default=True, help="Per-request timeout, seconds.")  # fmt: skip
@click.option("--connections", type=click.IntRange(1, 65_536), default=None,
              help="Connection pool size (default: sized for the rate).")  # fmt: skip
@click.option("--slo", "slos", multiple=True, callback=_slos, metavar="NAME=VALUE",
              help=f"Objective (repeatable): {', '.join(SLO_KEYS)}.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON result (default: loadtest-<time>.json).")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML report (default: beside the JSON).")  # fmt: skip
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="Allow a target that is not loopback (repeatable).")  # fmt: skip
@click.option(
    "--progress/--no-progress", default=True, help="The live progress bar (on a terminal)."
)
def loadtest(config: str | None, url: str | None, rate: float, duration: float,
             max_requests: int | None, ramp_s: float, start_rate: float, arrival: str,
             workload_path: str | None, model: str | None,
             embed_model: str | None, mix_text: str, prompt_tokens: str, max_tokens: str,
             seed: int, api_key: str | None, timeout_s: float, connections: int | None,
             slos: list[Slo], json_path: str | None, html_path: str | None,
             allow_hosts: tuple[str, ...], progress: bool) -> None:  # fmt: skip
    """Open-loop load test: requests leave at scheduled times whatever the answers do
    (no coordinated omission); latency counts from each request's actual send, and the
    dispatch lag (actual - scheduled send) is reported on its own."""
    target = find_gateway(config, url, None)
    url = target.url
    try:
        check_target(url, allow_hosts)
    except TargetRefused as exc:
        raise _Refused(str(exc)) from None
    try:
        schedule = Schedule(rate=rate, duration_s=duration, requests=max_requests, ramp_s=ramp_s,
                            start_rate=start_rate, arrival=arrival, seed=seed)  # type: ignore[arg-type]  # fmt: skip
        workload = _workload(
            workload_path, model, embed_model, mix_text, prompt_tokens, max_tokens, seed
        )
    except (ValueError, WorkloadError) as exc:
        raise click.UsageError(str(exc)) from None
    pool = connections or default_connections(schedule.peak_rate, timeout_s)
    key = api_key or os.environ.get("INTERLOCK_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if key is None and target.url_from.startswith("server.host"):
        # the gateway that configuration describes, so its admin key may go there (a key
        # is never sent to a URL given on the command line or in $INTERLOCK_URL)
        key = target.key
    base = api_base(url)
    workload, discovered = _choose_models(workload, base, key, timeout_s)
    run_config = RunConfig(base, schedule, workload, key, timeout_s, pool)
    planned = schedule.expected_count()
    with ProgressBar(planned, enabled=progress) as bar:
        result = _run_async(lambda stop: run(run_config, bar.update, stop))
    described = {
        "rate": rate, "duration_s": duration, "requests": max_requests, "ramp_s": ramp_s,
        "start_rate": start_rate, "arrival": arrival, "timeout_s": timeout_s, "connections": pool,
        "workload": workload.describe(), "slos": [f"{s.name}={s.threshold:g}" for s in slos],
        "models_discovered": discovered,
    }  # fmt: skip
    doc = summarise(
        result, target=url, config=described, target_rate=schedule.peak_rate, planned=planned
    )
    doc["slo"] = evaluate_slos(doc, slos)
    doc["passed"] = bool(doc["slo"]["passed"] and doc["requests"]["ok"] > 0)
    jpath, hpath = _paths(json_path, html_path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    hpath.parent.mkdir(parents=True, exist_ok=True)
    hpath.write_text(render_html(doc), encoding="utf-8")
    _print_summary(doc, jpath, hpath)
    if not doc["passed"]:
        raise SystemExit(1)


def _workload(path: str | None, model: str | None, embed_model: str | None, mix_text: str,
              prompt_tokens: str, max_tokens: str, seed: int) -> Workload:  # fmt: skip
    if path:
        return load_workload(path, default_model=model, default_embed_model=embed_model, seed=seed)
    return synthetic_workload(model=model, mix=parse_mix(mix_text), embed_model=embed_model, seed=seed,
                              prompt_tokens=parse_length(prompt_tokens, "--prompt-tokens"),
                              max_tokens=parse_length(max_tokens, "--max-tokens"))  # fmt: skip


def _choose_models(workload: Workload, base: str, key: str | None,
                   timeout_s: float) -> tuple[Workload, dict[str, str]]:  # fmt: skip
    """Models for the entries that name none: the first the target serves of each kind
    needed (one probe request each, before the run; said on stderr and in the result)."""
    needs = workload.unresolved()
    if not needs:
        return workload, {}
    found: dict[str, str] = {}
    for need in sorted(needs):
        try:
            hit = discover_model(base, key, need, timeout=min(timeout_s, 30.0))
        except DiscoveryError as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(hit.note(need, base), err=True)
        found[need] = hit.model
    return workload.resolved(found.get("chat"), found.get("embeddings")), found


def _run_async(make: Callable[[asyncio.Event], Coroutine[Any, Any, RunResult]]) -> RunResult:
    """Run on uvloop when installed (finer timers, cheaper sockets); Ctrl-C stops the
    schedule and still writes the report of what was sent."""

    async def main() -> RunResult:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        return await make(stop)

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def _paths(json_path: str | None, html_path: str | None) -> tuple[Path, Path]:
    if json_path is None:
        json_path = f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    jpath = Path(json_path)
    return jpath, Path(html_path) if html_path else jpath.with_suffix(".html")


def _print_summary(doc: dict[str, Any], jpath: Path, hpath: Path) -> None:
    req, arr, lat, ttft = doc["requests"], doc["arrival"], doc["latency_ms"], doc["ttft_ms"]

    def ms(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    click.echo(f"target      {doc['target']}")
    lag = arr["lag_ms"]

    def lag_ms(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    click.echo(
        f"arrivals    target {arr['target_rps']:g}/s, achieved {arr['achieved_rps'] or 0:.2f}/s"
    )
    click.echo(f"dispatch    lag ms (actual - intended send) p50 {lag_ms(lag['p50'])}  "
               f"p99 {lag_ms(lag['p99'])}  max {lag_ms(lag['max'])}")  # fmt: skip
    click.echo(f"requests    sent {req['sent']}, ok {req['ok']}, errors {req['errors']}, "
               f"unfinished {req['unfinished']}, error rate {doc['error_rate']:.4f}")  # fmt: skip
    click.echo(f"latency ms  p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  "
               f"max {ms(lat['max'])}  (from the actual send)")  # fmt: skip
    if ttft["count"]:
        click.echo(
            f"ttft ms     p50 {ms(ttft['p50'])}  p95 {ms(ttft['p95'])}  p99 {ms(ttft['p99'])}"
        )
    click.echo(f"throughput  {doc['throughput']['ok_rps']:.1f} ok/s, "
               f"{doc['throughput']['output_tokens_per_s']:.0f} output tokens/s")  # fmt: skip
    for name, count in doc["errors"].items():
        click.echo(f"  error {name}: {count}")
    for c in doc["slo"]["checks"]:
        mark = "pass" if c["passed"] else "FAIL"
        actual = "unmeasured" if c["actual"] is None else f"{c['actual']:g}"
        op = "<=" if c["bound"] == "max" else ">="
        click.echo(f"slo {mark:<4}    {c['name']} {op} {c['threshold']:g} (actual {actual})")
    click.echo(f"result      {'PASS' if doc['passed'] else 'FAIL'}  json {jpath}  html {hpath}")
