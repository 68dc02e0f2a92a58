"""``interlock report …`` and ``interlock estimate …``: spend reviews and cost estimates.

Reports read the ledger in the configured database directly (the server need not run).
Every command prints an aligned table by default, or ``--format csv`` / ``--format json``
(money as exact decimal strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import click

from interlock.cli.common import (
    cli_settings,
    database_options,
    echo_json,
    format_option,
    load_prices,
    parse_decimal,
    parse_rate,
    parse_when,
    prices_option,
    render,
    since_option,
    text_of,
    until_option,
    upstream_models,
    window,
    window_line,
    with_engine,
)

_BY = ("key", "user", "team", "feature", "model", "deployment", "provider", "outcome", "tier")

# ── interlock report ─────────────────────────────────────────────────────────────────

_SPEND_COLUMNS = [
    ("requests", "REQUESTS", "int"),
    ("prompt_tokens", "PROMPT TOK", "int"),
    ("completion_tokens", "COMPL TOK", "int"),
    ("cost_usd", "COST", "usd"),
    ("cost_per_request", "PER REQUEST", "usd"),
    ("share", "SHARE", "pct"),
]


def _group_columns(by: str) -> list[tuple[str, str, str]]:
    """The group column, and the key's name next to a key id."""
    cols = [("group", by.upper(), "str")]
    return [*cols, ("key_name", "NAME", "str")] if by == "key" else cols


async def _named(engine: Any, by: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Grouped by key: each row gets its key's name (``key_name``; None if unnamed)."""
    if by != "key":
        return [dict(r) for r in rows]
    from interlock.storage.keys import KeyStore

    names = {k.key_id: k.name for k in await KeyStore(engine).list(include_revoked=True)}
    return [{**r, "key_name": names.get(r["group"])} for r in rows]


@click.group()
def report() -> None:
    """Spend reports from the ledger (reads the database; the server need not run).

    \b
    interlock report spend --by team --since 1d        daily cost review
    interlock report top --by user --since 7d --limit 10
    interlock report waste --since 7d                  failed calls, retries, fallbacks
    interlock report optimise --since 30d              what-ifs: cheaper tier, cache, batch
    """


@report.command("spend")
@database_options
@click.option("--by", type=click.Choice(_BY), default="team", show_default=True,
              help="Group by (feature: the key's feature tags).")  # fmt: skip
@since_option
@until_option
@format_option
def report_spend(config: str | None, by: str, since: str, until: str | None, fmt: str) -> None:
    """Cost per team, user, feature, model, ... most expensive first."""
    from interlock.spend.reports import spend_by, totals

    start, end = window(since, until)

    async def go(engine: Any) -> tuple[Any, Any]:
        rows = await _named(engine, by, await spend_by(engine, by, start, end))
        return rows, await totals(engine, start, end)

    rows, total = with_engine(cli_settings(config), go)
    click.echo(render(rows, [*_group_columns(by), *_SPEND_COLUMNS], fmt))
    if fmt == "table":
        per = total.cost_usd / total.requests if total.requests else Decimal(0)
        click.echo(
            f"\ntotal: {total.requests:,} requests, ${text_of(total.cost_usd)} "
            f"(${text_of(per.quantize(Decimal('1e-10')))} per request); {window_line(start, end)}"
        )
        click.echo(
            f"tokens: {total.prompt_tokens:,} prompt ({total.cached_tokens:,} cache reads, "
            f"{total.cache_write_tokens:,} cache writes 5m, {total.cache_write_1h_tokens:,} "
            f"cache writes 1h), {total.completion_tokens:,} completion "
            f"({total.reasoning_tokens:,} reasoning); details from unrolled rows"
        )


@report.command("top")
@database_options
@click.option("--by", type=click.Choice(_BY), default="user", show_default=True)
@since_option
@until_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=10, show_default=True)
@format_option
def report_top(
    config: str | None, by: str, since: str, until: str | None, limit: int, fmt: str
) -> None:
    """The top spenders: the groups that spent the most."""
    from interlock.spend.reports import top_spenders

    start, end = window(since, until)

    async def go(engine: Any) -> Any:
        return await _named(engine, by, await top_spenders(engine, by, start, limit, end))

    rows = with_engine(cli_settings(config), go)
    ranked = [{"rank": i, **r} for i, r in enumerate(rows, 1)]
    click.echo(render(ranked, [("rank", "#", "int"), *_group_columns(by), *_SPEND_COLUMNS], fmt))


@report.command("waste")
@database_options
@since_option
@until_option
@format_option
def report_waste(config: str | None, since: str, until: str | None, fmt: str) -> None:
    """Spend with no useful answer: failed calls, retries, possible hedges, fallbacks.

    A successful request with more than one attempt is counted as a possible hedge: the
    ledger does not tell a retry from a hedged duplicate, and both may have been billed.
    """
    from interlock.spend.reports import waste

    start, end = window(since, until)

    async def go(engine: Any) -> Any:
        return await waste(engine, start, end)

    w = with_engine(cli_settings(config), go)
    if fmt == "json":
        echo_json(w)
        return
    rows: list[dict[str, Any]] = [
        {"metric": "requests", "requests": w["requests"], "cost_usd": w["cost_usd"]},
        {"metric": "failed_calls", **w["failed_calls"]},
        *[{"metric": f"failed:{k}", **v} for k, v in w["failed_by_outcome"].items()],
        {"metric": "retries", "requests": w["retries"]["requests"],
         "extra_attempts": w["retries"]["extra_attempts"]},
        {"metric": "possible_hedges", **w["possible_hedges"]},
        {"metric": "fallbacks", **w["fallbacks"]},
        {"metric": "estimated_usage", **w["estimated_usage"]},
    ]  # fmt: skip
    cols = [("metric", "METRIC", "str"), ("requests", "REQUESTS", "int"),
            ("extra_attempts", "EXTRA ATTEMPTS", "int"), ("cost_usd", "COST", "usd"),
            ("share", "SHARE", "pct")]  # fmt: skip
    click.echo(render(rows, cols, fmt))
    if fmt == "table":
        click.echo(f"\n{window_line(start, end)}")


_OPT_COLUMNS = [
    ("model", "MODEL", "str"),
    ("priced_as", "PRICED AS", "str"),
    ("requests", "REQUESTS", "int"),
    ("cost_usd", "COST", "usd"),
    ("cheaper_model", "CHEAPER MODEL", "str"),
    ("cheaper_cost_usd", "ON IT", "usd"),
    ("cheaper_saving_usd", "SAVES", "usd"),
    ("cache_hit_rate", "CACHE HITS", "pct"),
    ("cache_saving_usd", "CACHE SAVES", "usd"),
    ("batchable_cost_usd", "BATCHABLE", "usd"),
    ("batch_saving_usd", "BATCH SAVES", "usd"),
    ("best", "BEST", "str"),
]


def _targets(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        model, sep, target = v.partition("=")
        if not sep or not model or not target:
            raise click.BadParameter(f"{v!r}: expected MODEL=CHEAPER", param_hint="--target")
        out[model.strip().lower()] = target.strip().lower()
    return out


@report.command("optimise")
@database_options
@since_option
@until_option
@click.option(
    "--cache-hit-rate",
    default="0.2",
    show_default=True,
    help="What-if share of requests answered from the cache.",
)
@click.option(
    "--batch-discount",
    default="0.5",
    show_default=True,
    help="What-if batch API discount on non-streaming OpenAI/Anthropic traffic.",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="MODEL=CHEAPER",
    help="The cheaper model to price MODEL's tokens at (default: the cheapest of "
    "its family, else of its vendor). Repeatable.",
)
@prices_option
@format_option
def report_optimise(config: str | None, since: str, until: str | None, cache_hit_rate: str,
                    batch_discount: str, targets: tuple[str, ...], prices_path: str | None,
                    fmt: str) -> None:  # fmt: skip
    """Where a cheaper tier, caching or batching would have saved the most (what-ifs).

    For the monthly review. Each figure is a what-if, not a measurement: the same tokens
    priced at a cheaper model of the same vendor, a share of requests served from the
    cache at no cost, and non-streaming traffic sent through a batch API at a discount.
    """
    from interlock.spend.reports import optimisation

    start, end = window(since, until)
    hit = parse_rate(cache_hit_rate, "--cache-hit-rate")
    discount = parse_rate(batch_discount, "--batch-discount")
    table = load_prices(prices_path)
    named = _targets(targets)
    settings = cli_settings(config)

    async def go(engine: Any) -> Any:
        return await optimisation(engine, start, table, until=end, upstream=upstream_models(settings),
                                  cache_hit_rate=hit, batch_discount=discount, targets=named)  # fmt: skip

    rows = with_engine(settings, go)
    if fmt == "table":
        click.echo("What-ifs, not measurements (savings over the window):")
    click.echo(render(rows, _OPT_COLUMNS, fmt))
    if fmt == "table":
        click.echo(f"\n{window_line(start, end)}; prices: table {table.version}")


# ── interlock estimate ───────────────────────────────────────────────────────────────


@click.group()
def estimate() -> None:
    """Estimate costs: a planned workload, a projection from the ledger, self-hosting.

    \b
    interlock estimate monthly --model gpt-4o --requests-per-month 1000000 \\
        --input-tokens 500 --output-tokens 200 [--buffer 2.5] [--compare gpt-4o-mini,claude-haiku-4-5]
    interlock estimate ledger --days 7 [--cache-hit-rate 0.2] [--cheaper-tier gpt-4o-mini]
    interlock estimate break-even --model gpt-4o --gpu-usd-per-hour 2.5 \\
        --tokens-per-second 1500 --utilisation 0.6 --input-tokens 500 --output-tokens 200
    """


_MONTHLY_COLUMNS = [
    ("model", "MODEL", "str"),
    ("priced_as", "PRICED AS", "str"),
    ("input_per_mtok", "IN $/1M", "num"),
    ("output_per_mtok", "OUT $/1M", "num"),
    ("per_request", "PER REQUEST", "usd"),
    ("base", "MONTH", "usd"),
    ("buffered", "BUFFERED", "usd"),
    ("vs_cheapest", "VS CHEAPEST", "num"),
]


@estimate.command("monthly")
@click.option("--model", required=True, help="Model id (price table id or an upstream id).")
@click.option("--requests-per-month", type=click.IntRange(0), required=True)
@click.option("--input-tokens", type=click.IntRange(0), required=True, help="Per request.")
@click.option("--output-tokens", type=click.IntRange(0), required=True, help="Per request.")
@click.option(
    "--buffer",
    default="2.5",
    show_default=True,
    help="Safety factor for longer prompts, retries and growth (2-3x is usual).",
)
@click.option("--compare", "others", default="", help="More models to compare, comma-separated.")
@prices_option
@format_option
def estimate_monthly(model: str, requests_per_month: int, input_tokens: int, output_tokens: int,
                     buffer: str, others: str, prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """A month's cost: requests x tokens per request x price, with a buffer.

    With --compare, one row per model, cheapest first.
    """
    from interlock.spend.estimate import compare

    factor = parse_decimal(buffer, "--buffer")
    if factor < 1:
        raise click.BadParameter("must be at least 1", param_hint="--buffer")
    models = [model, *(m.strip() for m in others.split(",") if m.strip())]
    try:
        rows = compare(models, requests_per_month, input_tokens, output_tokens,
                       load_prices(prices_path), factor)  # fmt: skip
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(render(rows, _MONTHLY_COLUMNS, fmt))
    if fmt == "table":
        click.echo(f"\n{requests_per_month:,} requests/month x ({input_tokens} in + "
                   f"{output_tokens} out) tokens; buffered = month x {factor}")  # fmt: skip


@estimate.command("ledger")
@database_options
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True,
              help="Days of recorded traffic to project from.")  # fmt: skip
@click.option("--cache-hit-rate", default=None, help="What-if: this share served from cache.")
@click.option("--cheaper-tier", default=None, help="What-if: every token priced at this model.")
@prices_option
@format_option
def estimate_ledger(config: str | None, days: int, cache_hit_rate: str | None,
                    cheaper_tier: str | None, prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """Project this month's cost from recorded traffic, with what-ifs."""
    from interlock.spend.estimate import from_ledger

    hit = parse_rate(cache_hit_rate, "--cache-hit-rate") if cache_hit_rate else Decimal(0)
    table = load_prices(prices_path)
    settings = cli_settings(config)

    async def go(engine: Any) -> Any:
        return await from_ledger(engine, days, table, cheaper_tier=cheaper_tier,
                                 cache_hit_rate=hit, upstream=upstream_models(settings))  # fmt: skip

    try:
        r = with_engine(settings, go)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if fmt == "json":
        echo_json(r)
        return
    rows: list[dict[str, Any]] = [
        {"scenario": "observed", "detail": f"{r['days']} days, {r['requests']:,} requests",
         "cost_usd": r["observed_cost_usd"]},
        {"scenario": "per day", "detail": "observed average", "cost_usd": r["cost_per_day"]},
        {"scenario": "projected month", "detail": f"x {r['days_in_month']} days",
         "cost_usd": r["projected_month_usd"]},
    ]  # fmt: skip
    what_if = r["what_if"]
    if "cheaper_tier" in what_if:
        w = what_if["cheaper_tier"]
        rows.append({"scenario": "what-if: cheaper tier", "detail": f"all on {w['model']}",
                     "cost_usd": w["projected_month_usd"], "saving_usd": w["saving_usd"]})  # fmt: skip
    if "cache" in what_if:
        w = what_if["cache"]
        rows.append({"scenario": "what-if: cache", "detail": f"{w['hit_rate'] * 100:.0f}% hits",
                     "cost_usd": w["projected_month_usd"], "saving_usd": w["saving_usd"]})  # fmt: skip
    best = what_if["optimisation"]["best_per_model_saving_usd"]
    rows.append({"scenario": "what-if: best per model", "detail": "see report optimise",
                 "cost_usd": r["projected_month_usd"] - best, "saving_usd": best})  # fmt: skip
    cols = [("scenario", "SCENARIO", "str"), ("detail", "DETAIL", "str"),
            ("cost_usd", "COST", "usd"), ("saving_usd", "SAVES", "usd")]  # fmt: skip
    click.echo(render(rows, cols, fmt))


@estimate.command("break-even")
@click.option("--model", required=True, help="The API model self-hosting would replace.")
@click.option("--gpu-usd-per-hour", required=True, help="What one GPU (or replica) costs an hour.")
@click.option(
    "--tokens-per-second",
    required=True,
    help="Its measured aggregate throughput, prompt + completion tokens.",
)
@click.option(
    "--utilisation",
    default="0.6",
    show_default=True,
    help="Share of paid hours spent serving, (0, 1].",
)
@click.option("--input-tokens", type=click.IntRange(0), required=True, help="Per request.")
@click.option("--output-tokens", type=click.IntRange(0), required=True, help="Per request.")
@prices_option
@format_option
def estimate_break_even(model: str, gpu_usd_per_hour: str, tokens_per_second: str,
                        utilisation: str, input_tokens: int, output_tokens: int,
                        prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """When should I self-host? The monthly volume at which a GPU beats the API.

    Assumes at least one GPU runs all month (730 h, a fixed cost), the throughput is
    aggregate over concurrent requests, and the API is billed at list price; engineering
    and operations costs of self-hosting are left out.
    """
    from interlock.spend.estimate import break_even

    entry = load_prices(prices_path).match(model)
    if entry is None:
        raise click.ClickException(f"no price for model {model!r} in the price table")
    try:
        r = break_even(entry.price, input_tokens, output_tokens,
                       parse_decimal(gpu_usd_per_hour, "--gpu-usd-per-hour"),
                       parse_decimal(tokens_per_second, "--tokens-per-second"),
                       parse_decimal(utilisation, "--utilisation"))  # fmt: skip
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    r = {"model": model, "priced_as": entry.id, **r}
    if fmt == "json":
        echo_json(r)
        return
    volume = r["break_even_requests_per_month"]
    rows: list[dict[str, Any]] = [
        {"metric": "api cost per 1M tokens", "value": "$" + text_of(r["api_cost_per_1M"])},
        {"metric": "self-hosted cost per 1M tokens", "value": "$" + text_of(r["self_hosted_cost_per_1M"])},
        {"metric": "api cost per request", "value": "$" + text_of(r["api_cost_per_request"])},
        {"metric": "one GPU, all month", "value": "$" + text_of(r["gpu_monthly_usd"])},
        {"metric": "requests one GPU serves a month", "value": f"{r['requests_per_gpu_month']:,}"},
        {"metric": "break-even requests per month",
         "value": f"{volume:,}" if volume is not None else "never (the API is cheaper per token)"},
    ]  # fmt: skip
    click.echo(render(rows, [("metric", "METRIC", "str"), ("value", "VALUE", "str")], fmt))
    if fmt == "table":
        click.echo(f"\n{model} ({entry.id}); {input_tokens} in + {output_tokens} out tokens "
                   f"per request; utilisation {utilisation}")  # fmt: skip


# ── interlock spend … ─────────────────────────────────────────────────────────────────


@click.group("spend")
def spend() -> None:
    """Ledger maintenance: reconcile it with what the providers billed."""


@spend.command("reconcile")
@database_options
@click.option(
    "--since",
    default="1d",
    show_default=True,
    help="Lost requests created since: 12h, 1d, 7d ... or an ISO date/time (UTC).",
)
@click.option(
    "--until",
    default=None,
    help="... and before (ISO, UTC; default: now − server.request_timeout_s − the "
    "providers' usage_api.settle_delay_s, so that their usage is complete).",
)
@click.option("--dry-run", is_flag=True, default=False, help="Compare only; change nothing.")
@format_option
def reconcile_cmd(config: str | None, since: str, until: str | None, dry_run: bool,
                  fmt: str) -> None:  # fmt: skip
    """Replace the worst-case cost of `replica_lost` rows (requests in flight on a process
    that died) and `abandoned_hung` rows (abandoned attempts that hung) by what the
    providers' usage APIs say was billed, for providers with `usage_api` set. Each
    comparison is kept in the `ledger_reconcile` table."""
    from interlock.spend.reconcile import (
        ReconcileError,
        abandoned_reach,
        default_until,
        reach_from,
        reconcile,
        views_from,
    )
    from interlock.storage.ledger import LedgerStore

    settings = cli_settings(config)
    views = views_from(settings)
    if not views:
        raise click.ClickException(
            "no provider has usage_api set: the worst case of replica_lost rows stays"
        )
    now = datetime.now(UTC)
    start = parse_when(since, now)
    end = parse_when(until, now) if until else default_until(settings, now)

    async def go(engine: Any) -> Any:
        return await reconcile(LedgerStore(engine), views, reach_from(settings), start, end,
                               reach_s=settings.server.request_timeout_s,
                               abandoned_reach_s=abandoned_reach(settings), now=now,
                               dry_run=dry_run)  # fmt: skip

    try:
        report = with_engine(settings, go)
    except (ReconcileError, OSError) as exc:
        raise click.ClickException(f"the usage API could not be read: {exc}") from None
    rows = [
        {"provider": ln.provider, "model": ln.model, "from": ln.start.isoformat(),
         "to": ln.end.isoformat(), "requests": ln.provider_requests,
         "provider_usd": ln.provider_usd, "ledger_usd": ln.ledger_usd, "lost": ln.lost_rows,
         "lost_before_usd": ln.lost_before_usd, "lost_after_usd": ln.lost_after_usd,
         "unattributed_usd": ln.unattributed_usd}
        for ln in report.lines
    ]  # fmt: skip
    if fmt == "json":
        echo_json({"lines": rows, "rewritten": report.rewritten, "skipped": report.skipped,
                    "before_usd": report.before_usd, "after_usd": report.after_usd,
                    "dry_run": dry_run})  # fmt: skip
        return
    cols = [("provider", "PROVIDER", "str"), ("model", "MODEL", "str"), ("from", "FROM", "str"),
            ("to", "TO", "str"), ("requests", "REQUESTS", "int"),
            ("provider_usd", "PROVIDER $", "usd"), ("ledger_usd", "RECORDS $", "usd"),
            ("lost", "LOST", "int"), ("lost_before_usd", "LOST BEFORE $", "usd"),
            ("lost_after_usd", "LOST AFTER $", "usd"),
            ("unattributed_usd", "UNEXPLAINED $", "usd")]  # fmt: skip
    if rows:
        click.echo(render(rows, cols, fmt))
    if fmt == "table":
        verb = "would rewrite" if dry_run else "rewrote"
        click.echo(f"{verb} {report.rewritten} replica_lost row(s): ${text_of(report.before_usd)} "
                   f"-> ${text_of(report.after_usd)}; {report.skipped} left at their worst case "
                   "(too recent, or reachable through a provider without usage_api)")  # fmt: skip
