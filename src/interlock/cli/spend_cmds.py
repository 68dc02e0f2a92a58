"""``interlock report …`` and ``interlock estimate …``: spend reviews and cost estimates.

Reports read the ledger in the configured database directly (the server need not run).
Every command prints an aligned table by default, or ``--format csv`` / ``--format json``
(money as exact decimal strings).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click
import orjson

from interlock.settings import ConfigError, Settings

T = TypeVar("T")

_FORMATS = ("table", "csv", "json")
_BY = ("key", "user", "team", "feature", "model", "deployment", "provider", "outcome", "tier")
_SPAN = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}

_config_file_option = click.option(
    "--config",
    "-c",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file (default: $INTERLOCK_CONFIG, ./interlock.yaml, or the embedded default).",
)


def _config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--init`` for a command that opens the state database."""
    return _config_file_option(_init_option(fn))


_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
_since_option = click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Start of the window: 12h, 1d, 7d, 30d, 2w ... back from now, or an ISO date/time (UTC).",
)
_until_option = click.option(
    "--until", default=None, help="End of the window (exclusive; ISO date/time, UTC). Default: now."
)
_prices_option = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Price table file (default: the one packaged with Interlock).",
)


# ── helpers ──────────────────────────────────────────────────────────────────────────


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """``7d`` (back from now) or an ISO date/time (naive means UTC) -> an aware UTC datetime."""
    now = now or datetime.now(UTC)
    text = value.strip().lower()
    span = _SPAN.match(text)
    if span:
        return now - timedelta(**{_UNITS[span[2]]: int(span[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a span such as 1d, 7d, 30d or an ISO date such as 2026-11-01"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _decimal(value: str, name: str) -> Decimal:
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number", param_hint=name) from None
    if not out.is_finite():
        raise click.BadParameter(f"{value!r} is not a finite number", param_hint=name)
    return out


def _rate(value: str, name: str) -> Decimal:
    out = _decimal(value, name)
    if not 0 <= out <= 1:
        raise click.BadParameter("must be between 0 and 1", param_hint=name)
    return out


def cli_settings(config: str | None) -> Settings:
    """The configuration a CLI command reads, found as ``serve`` finds it (a simulator, if
    enabled, is not started: its deployments point at a placeholder address, which reading
    the ledger never uses). Imports neither the gateway nor the provider adapters."""
    from interlock.cli.defaults import load_cli_config

    try:
        cfg = load_cli_config(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _ORIGINS[id(cfg.settings)] = (cfg.settings, cfg.origin)
    return cfg.settings


# Settings object -> how its configuration was found (for the messages of the database
# commands); the settings are kept alive with it so that an id is never reused.
_ORIGINS: dict[int, tuple[Settings, str]] = {}


class StateMissing(click.ClickException):
    """A database command asked to open state that does not exist (exit status 2)."""

    exit_code = 2


def _remember_init(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["interlock.init"] = value
    return value


_init_option = click.option(
    "--init",
    is_flag=True,
    default=False,
    expose_value=False,
    callback=_remember_init,
    help="Create the database (and state directory) if they do not exist yet. Without it "
    "a missing one is refused: run in the wrong directory, a command would otherwise "
    "start an empty database and print nothing.",
)


def _origin(settings: Settings) -> str:
    entry = _ORIGINS.get(id(settings))
    return entry[1] if entry is not None and entry[0] is settings else "the configuration"


def _db_label(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.storage.url).render_as_string(hide_password=True)


def _refuse(settings: Settings, missing: str) -> StateMissing:
    return StateMissing(
        f"{missing} does not exist (configuration: {_origin(settings)}). Run the command "
        "where the gateway runs, or give it the gateway's configuration with --config / "
        "$INTERLOCK_CONFIG; to start a new, empty one here, add --init"
    )


def _with_engine(
    settings: Settings,
    fn: Callable[[Any], Awaitable[T]],
    *,
    init: bool | None = None,
    need_pepper: bool = False,
) -> T:
    """Run ``fn(engine)`` on the configured database, migrated to the newest schema.

    Unless ``init``, refuses (exit 2) when the database does not exist yet (SQLite: its
    file; PostgreSQL: Interlock's tables) or, with ``need_pepper``, when the key-hash
    secret is neither configured nor kept in the state directory: a new one would make
    keys the gateway cannot check. Says on stderr which database it uses."""
    from pathlib import Path

    from interlock.storage.engine import create_engine, run_migrations, sqlite_path

    if init is None:  # the command's --init (see _init_option)
        ctx = click.get_current_context(silent=True)
        init = bool(ctx.meta.get("interlock.init")) if ctx is not None else False
    db_file = sqlite_path(settings.storage.url)
    if not init:
        if db_file is not None and not Path(db_file).exists():
            raise _refuse(settings, f"the database {Path(db_file).resolve()}")
        pepper = Path(settings.state_dir) / "key_hash_secret"
        if need_pepper and settings.auth.key_hash_secret is None and not pepper.exists():
            raise _refuse(
                settings,
                f"the key-hash secret {pepper.resolve()} (auth.key_hash_secret is not set)",
            )
    click.echo(
        f"interlock: database {_db_label(settings)} (configuration: {_origin(settings)})",
        err=True,
    )

    async def go() -> T:
        engine = create_engine(settings.storage)
        try:
            if not init and db_file is None and not await _has_tables(engine, settings):
                raise _refuse(settings, f"Interlock's tables in {_db_label(settings)}")
            if not await _at_head(engine):
                await run_migrations(engine, settings.storage.db_schema)
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


_REVISION = re.compile(r'^(down_)?revision(?:: *[\w| ]+)? *= *(?:"([^"]*)"|None)', re.M)


def _head_revision() -> str | None:
    """The newest migration's revision, read from the migration files' ``revision`` /
    ``down_revision`` lines (None if they are not one plain chain: then Alembic decides).
    Importing Alembic to find out costs a CLI command ~0.2 s."""
    from pathlib import Path

    import interlock.storage

    versions = Path(interlock.storage.__file__).parent / "migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for f in versions.glob("*.py"):
        found = dict((bool(m[1]), m[2]) for m in _REVISION.finditer(f.read_text()))
        if False not in found or not found[False]:
            return None
        revisions.add(found[False])
        if found.get(True):
            parents.add(found[True])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def _at_head(engine: Any) -> bool:
    """Whether the database's schema is already the newest (nothing to migrate)."""
    from sqlalchemy import text

    head = _head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except Exception:  # no table yet, or any doubt: let Alembic decide
        return False
    return [r[0] for r in rows] == [head]


async def _has_tables(engine: Any, settings: Settings) -> bool:
    """Whether the (non-SQLite) database already holds Interlock's schema."""
    from sqlalchemy import inspect

    schema = settings.storage.db_schema

    async with engine.connect() as conn:
        return bool(
            await conn.run_sync(lambda c: inspect(c).has_table("alembic_version", schema=schema))
        )


def _upstream(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """deployment name -> (upstream model id, provider kind), as the gateway prices it."""
    out: dict[str, tuple[str, str | None]] = {}
    for name, dep in settings.deployments.items():
        provider = settings.providers.get(dep.provider)
        out[name] = (dep.model, provider.kind if provider is not None else None)
    return out


def _prices(path: str | None) -> Any:
    from interlock.spend.prices import PriceTable, PriceTableError

    try:
        return PriceTable.load(path)
    except PriceTableError as exc:
        raise click.ClickException(str(exc)) from None


def _text(value: Any) -> str:
    from interlock.spend.cost import format_usd

    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format_usd(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _text(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, default=_json_default, option=orjson.OPT_INDENT_2).decode())


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "usd" and isinstance(value, Decimal):
        return "$" + _text(value)
    if kind == "pct" and isinstance(value, Decimal):
        return f"{value * 100:.2f}%"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    return _text(value) or "-"


def render(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]], fmt: str
) -> str:
    """Rows as an aligned table, CSV or JSON. ``columns``: (key, header, kind) where kind
    is ``str``, ``int``, ``usd``, ``pct`` or ``num`` (numbers are right-aligned)."""
    if fmt == "json":
        return orjson.dumps(
            [{k: r.get(k) for k, _, _ in columns} for r in rows],
            default=_json_default,
            option=orjson.OPT_INDENT_2,
        ).decode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([k for k, _, _ in columns])
        for r in rows:
            writer.writerow([_text(r.get(k)) for k, _, _ in columns])
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(r.get(k), kind) for k, _, kind in columns] for r in rows]
    headers = [h for _, h, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if kind == "str" else v.rjust(w)
            for v, w, (_, _, kind) in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(c) for c in cells)
    return "\n".join(out)


def _window(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    start = parse_when(since)
    end = parse_when(until) if until else None
    if end is not None and end <= start:
        raise click.BadParameter("--until must be after --since")
    return start, end


def _window_line(start: datetime, end: datetime | None) -> str:
    stop = end.isoformat(timespec="seconds") if end else "now"
    return f"window: {start.isoformat(timespec='seconds')} .. {stop}"


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
@_config_option
@click.option("--by", type=click.Choice(_BY), default="team", show_default=True,
              help="Group by (feature: the key's feature tags).")  # fmt: skip
@_since_option
@_until_option
@_format_option
def report_spend(config: str | None, by: str, since: str, until: str | None, fmt: str) -> None:
    """Cost per team, user, feature, model, ... most expensive first."""
    from interlock.spend.reports import spend_by, totals

    start, end = _window(since, until)

    async def go(engine: Any) -> tuple[Any, Any]:
        rows = await _named(engine, by, await spend_by(engine, by, start, end))
        return rows, await totals(engine, start, end)

    rows, total = _with_engine(cli_settings(config), go)
    click.echo(render(rows, [*_group_columns(by), *_SPEND_COLUMNS], fmt))
    if fmt == "table":
        per = total.cost_usd / total.requests if total.requests else Decimal(0)
        click.echo(
            f"\ntotal: {total.requests:,} requests, ${_text(total.cost_usd)} "
            f"(${_text(per.quantize(Decimal('1e-10')))} per request); {_window_line(start, end)}"
        )
        click.echo(
            f"tokens: {total.prompt_tokens:,} prompt ({total.cached_tokens:,} cache reads, "
            f"{total.cache_write_tokens:,} cache writes 5m, {total.cache_write_1h_tokens:,} "
            f"cache writes 1h), {total.completion_tokens:,} completion "
            f"({total.reasoning_tokens:,} reasoning); details from unrolled rows"
        )


@report.command("top")
@_config_option
@click.option("--by", type=click.Choice(_BY), default="user", show_default=True)
@_since_option
@_until_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=10, show_default=True)
@_format_option
def report_top(
    config: str | None, by: str, since: str, until: str | None, limit: int, fmt: str
) -> None:
    """The top spenders: the groups that spent the most."""
    from interlock.spend.reports import top_spenders

    start, end = _window(since, until)

    async def go(engine: Any) -> Any:
        return await _named(engine, by, await top_spenders(engine, by, start, limit, end))

    rows = _with_engine(cli_settings(config), go)
    ranked = [{"rank": i, **r} for i, r in enumerate(rows, 1)]
    click.echo(render(ranked, [("rank", "#", "int"), *_group_columns(by), *_SPEND_COLUMNS], fmt))


@report.command("waste")
@_config_option
@_since_option
@_until_option
@_format_option
def report_waste(config: str | None, since: str, until: str | None, fmt: str) -> None:
    """Spend with no useful answer: failed calls, retries, possible hedges, fallbacks.

    A successful request with more than one attempt is counted as a possible hedge: the
    ledger does not tell a retry from a hedged duplicate, and both may have been billed.
    """
    from interlock.spend.reports import waste

    start, end = _window(since, until)

    async def go(engine: Any) -> Any:
        return await waste(engine, start, end)

    w = _with_engine(cli_settings(config), go)
    if fmt == "json":
        _echo_json(w)
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
        click.echo(f"\n{_window_line(start, end)}")


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
@_config_option
@_since_option
@_until_option
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
@_prices_option
@_format_option
def report_optimise(config: str | None, since: str, until: str | None, cache_hit_rate: str,
                    batch_discount: str, targets: tuple[str, ...], prices_path: str | None,
                    fmt: str) -> None:  # fmt: skip
    """Where a cheaper tier, caching or batching would have saved the most (what-ifs).

    For the monthly review. Each figure is a what-if, not a measurement: the same tokens
    priced at a cheaper model of the same vendor, a share of requests served from the
    cache at no cost, and non-streaming traffic sent through a batch API at a discount.
    """
    from interlock.spend.reports import optimisation

    start, end = _window(since, until)
    hit = _rate(cache_hit_rate, "--cache-hit-rate")
    discount = _rate(batch_discount, "--batch-discount")
    table = _prices(prices_path)
    named = _targets(targets)
    settings = cli_settings(config)

    async def go(engine: Any) -> Any:
        return await optimisation(engine, start, table, until=end, upstream=_upstream(settings),
                                  cache_hit_rate=hit, batch_discount=discount, targets=named)  # fmt: skip

    rows = _with_engine(settings, go)
    if fmt == "table":
        click.echo("What-ifs, not measurements (savings over the window):")
    click.echo(render(rows, _OPT_COLUMNS, fmt))
    if fmt == "table":
        click.echo(f"\n{_window_line(start, end)}; prices: table {table.version}")


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
@_prices_option
@_format_option
def estimate_monthly(model: str, requests_per_month: int, input_tokens: int, output_tokens: int,
                     buffer: str, others: str, prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """A month's cost: requests x tokens per request x price, with a buffer.

    With --compare, one row per model, cheapest first.
    """
    from interlock.spend.estimate import compare

    factor = _decimal(buffer, "--buffer")
    if factor < 1:
        raise click.BadParameter("must be at least 1", param_hint="--buffer")
    models = [model, *(m.strip() for m in others.split(",") if m.strip())]
    try:
        rows = compare(models, requests_per_month, input_tokens, output_tokens,
                       _prices(prices_path), factor)  # fmt: skip
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    click.echo(render(rows, _MONTHLY_COLUMNS, fmt))
    if fmt == "table":
        click.echo(f"\n{requests_per_month:,} requests/month x ({input_tokens} in + "
                   f"{output_tokens} out) tokens; buffered = month x {factor}")  # fmt: skip


@estimate.command("ledger")
@_config_option
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True,
              help="Days of recorded traffic to project from.")  # fmt: skip
@click.option("--cache-hit-rate", default=None, help="What-if: this share served from cache.")
@click.option("--cheaper-tier", default=None, help="What-if: every token priced at this model.")
@_prices_option
@_format_option
def estimate_ledger(config: str | None, days: int, cache_hit_rate: str | None,
                    cheaper_tier: str | None, prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """Project this month's cost from recorded traffic, with what-ifs."""
    from interlock.spend.estimate import from_ledger

    hit = _rate(cache_hit_rate, "--cache-hit-rate") if cache_hit_rate else Decimal(0)
    table = _prices(prices_path)
    settings = cli_settings(config)

    async def go(engine: Any) -> Any:
        return await from_ledger(engine, days, table, cheaper_tier=cheaper_tier,
                                 cache_hit_rate=hit, upstream=_upstream(settings))  # fmt: skip

    try:
        r = _with_engine(settings, go)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    if fmt == "json":
        _echo_json(r)
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
@_prices_option
@_format_option
def estimate_break_even(model: str, gpu_usd_per_hour: str, tokens_per_second: str,
                        utilisation: str, input_tokens: int, output_tokens: int,
                        prices_path: str | None, fmt: str) -> None:  # fmt: skip
    """When should I self-host? The monthly volume at which a GPU beats the API.

    Assumes at least one GPU runs all month (730 h, a fixed cost), the throughput is
    aggregate over concurrent requests, and the API is billed at list price; engineering
    and operations costs of self-hosting are left out.
    """
    from interlock.spend.estimate import break_even

    entry = _prices(prices_path).match(model)
    if entry is None:
        raise click.ClickException(f"no price for model {model!r} in the price table")
    try:
        r = break_even(entry.price, input_tokens, output_tokens,
                       _decimal(gpu_usd_per_hour, "--gpu-usd-per-hour"),
                       _decimal(tokens_per_second, "--tokens-per-second"),
                       _decimal(utilisation, "--utilisation"))  # fmt: skip
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    r = {"model": model, "priced_as": entry.id, **r}
    if fmt == "json":
        _echo_json(r)
        return
    volume = r["break_even_requests_per_month"]
    rows: list[dict[str, Any]] = [
        {"metric": "api cost per 1M tokens", "value": "$" + _text(r["api_cost_per_1M"])},
        {"metric": "self-hosted cost per 1M tokens", "value": "$" + _text(r["self_hosted_cost_per_1M"])},
        {"metric": "api cost per request", "value": "$" + _text(r["api_cost_per_request"])},
        {"metric": "one GPU, all month", "value": "$" + _text(r["gpu_monthly_usd"])},
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
@_config_option
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
@_format_option
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
        report = _with_engine(settings, go)
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
        _echo_json({"lines": rows, "rewritten": report.rewritten, "skipped": report.skipped,
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
        click.echo(f"{verb} {report.rewritten} replica_lost row(s): ${_text(report.before_usd)} "
                   f"-> ${_text(report.after_usd)}; {report.skipped} left at their worst case "
                   "(too recent, or reachable through a provider without usage_api)")  # fmt: skip
