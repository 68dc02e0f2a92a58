"""What the CLI commands share: finding the configuration, opening the state database,
the common options (``--config``, ``--init``, ``--format``, ``--since``/``--until``,
``--prices``) and rendering rows as a table, CSV or JSON.

A command that reads a running gateway finds it with :mod:`interlock.cli.remote`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click
import orjson

from interlock.settings import ConfigError, Settings

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., Any])

_FORMATS = ("table", "csv", "json")
_SPAN = re.compile(r"^(\d+)([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}

CONFIG_HELP = (
    "Configuration file (default: $INTERLOCK_CONFIG, ./interlock.yaml, or the embedded default)."
)


def config_option(help: str = CONFIG_HELP) -> Callable[[FC], FC]:
    """``--config`` / ``-c``: the one declaration of the option every command takes; the
    file is found as ``serve`` finds it (:mod:`interlock.cli.defaults`)."""
    return click.option("--config", "-c", type=click.Path(dir_okay=False), default=None, help=help)


config_file_option = config_option()


def database_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--init`` for a command that opens the state database."""
    return config_file_option(init_option(fn))


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)
since_option = click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Start of the window: 12h, 1d, 7d, 30d, 2w ... back from now, or an ISO date/time (UTC).",
)
until_option = click.option(
    "--until", default=None, help="End of the window (exclusive; ISO date/time, UTC). Default: now."
)
prices_option = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Price table file (default: the one packaged with Interlock).",
)


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


def parse_decimal(value: str, name: str) -> Decimal:
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number", param_hint=name) from None
    if not out.is_finite():
        raise click.BadParameter(f"{value!r} is not a finite number", param_hint=name)
    return out


def parse_rate(value: str, name: str) -> Decimal:
    out = parse_decimal(value, name)
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


init_option = click.option(
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


def with_engine(
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

    if init is None:  # the command's --init (see init_option)
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


def upstream_models(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """deployment name -> (upstream model id, provider kind), as the gateway prices it."""
    out: dict[str, tuple[str, str | None]] = {}
    for name, dep in settings.deployments.items():
        provider = settings.providers.get(dep.provider)
        out[name] = (dep.model, provider.kind if provider is not None else None)
    return out


def load_prices(path: str | None) -> Any:
    from interlock.spend.prices import PriceTable, PriceTableError

    try:
        return PriceTable.load(path)
    except PriceTableError as exc:
        raise click.ClickException(str(exc)) from None


def text_of(value: Any) -> str:
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
        return text_of(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, default=_json_default, option=orjson.OPT_INDENT_2).decode())


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "usd" and isinstance(value, Decimal):
        return "$" + text_of(value)
    if kind == "pct" and isinstance(value, Decimal):
        return f"{value * 100:.2f}%"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    return text_of(value) or "-"


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
            writer.writerow([text_of(r.get(k)) for k, _, _ in columns])
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


def window(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    start = parse_when(since)
    end = parse_when(until) if until else None
    if end is not None and end <= start:
        raise click.BadParameter("--until must be after --since")
    return start, end


def window_line(start: datetime, end: datetime | None) -> str:
    stop = end.isoformat(timespec="seconds") if end else "now"
    return f"window: {start.isoformat(timespec='seconds')} .. {stop}"
