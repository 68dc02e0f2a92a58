"""Spend reports over the ledger: cost by group, top spenders, waste and what-if savings.

Every function reads the database directly (the server need not run) and returns plain
rows with exact :class:`~decimal.Decimal` money, for the CLI to print as a table, CSV or
JSON.

Two sources make up a window ``[since, until)``:

* raw ``ledger`` rows, one per request, filtered by ``created_at``;
* ``ledger_daily`` roll-ups of rows older than the retention period. A rolled-up day
  counts whole when any part of it lies in the window. The roll-up keeps key, user, team,
  model, deployment and outcome but not tags, provider, tier, cache reads and writes,
  reasoning tokens, attempts, fallbacks or the stream flag: grouped by one of those, rolled-up spend shows as one
  ``(rolled up)`` group, and the waste and batching figures that need them cover raw rows
  only.

Raw rows and roll-ups never overlap: rolling up deletes the rows it aggregates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal, TypedDict, get_args

from sqlalchemy import ColumnElement, and_, case, cast, func, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.cost import QUANTUM, tokens_usd
from interlock.spend.prices import Price, PriceTable, TableEntry
from interlock.storage.ledger import GROUPS
from interlock.storage.tables import ledger, ledger_daily

__all__ = [
    "BY",
    "NONE",
    "ROLLED_UP",
    "UNTAGGED",
    "By",
    "OptimisationRow",
    "SpendRow",
    "Totals",
    "cheaper_alternative",
    "optimisation",
    "spend_by",
    "tokens_cost",
    "top_spenders",
    "totals",
    "waste",
]

By = Literal["key", "user", "team", "feature", "model", "deployment", "provider", "outcome", "tier"]
BY: tuple[str, ...] = get_args(By)

NONE = "(none)"  # the group of requests without a key, user, team, model, ...
UNTAGGED = "(untagged)"  # feature report: requests without feature tags
ROLLED_UP = "(rolled up)"  # roll-ups, when grouped by what the roll-up does not keep

_ZERO = Decimal(0)
_MTOK = Decimal(1_000_000)
_SHARE = Decimal("0.0001")
# Token details summed from raw ledger rows (the roll-up does not keep them).
_DETAILS = ("cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")
_DAILY_GROUPS = {
    "key": ledger_daily.c.key_id,
    "user": ledger_daily.c.user_id,
    "team": ledger_daily.c.team_id,
    "model": ledger_daily.c.model,
    "deployment": ledger_daily.c.deployment,
    "outcome": ledger_daily.c.outcome,
}
# Vendors with a batch API at half the list price (OpenAI Batch, Anthropic Message Batches).
BATCH_VENDORS = frozenset({"openai", "anthropic"})


class SpendRow(TypedDict):
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    cost_per_request: Decimal
    share: Decimal  # of the window's total cost, 0-1


class OptimisationRow(TypedDict):
    model: str
    priced_as: str
    requests: int
    cost_usd: Decimal
    cheaper_model: str
    cheaper_cost_usd: Decimal | None
    cheaper_saving_usd: Decimal
    cache_hit_rate: Decimal
    cache_saving_usd: Decimal
    batchable_cost_usd: Decimal
    batch_saving_usd: Decimal
    best: str


@dataclass(slots=True)
class Totals:
    """Sums over a window. ``prompt_tokens`` includes the cache reads (``cached_tokens``)
    and writes (``cache_write_tokens``: 5-minute TTL, ``cache_write_1h_tokens``);
    ``completion_tokens`` includes ``reasoning_tokens``. Those four and the streaming split
    cover raw rows only (a roll-up keeps prompt and completion totals)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = _ZERO
    stream_cost_usd: Decimal = _ZERO  # raw streaming rows; roll-ups count as not batchable
    rolled_up_cost_usd: Decimal = _ZERO

    def add(self, other: Totals) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_write_1h_tokens += other.cache_write_1h_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost_usd += other.cost_usd
        self.stream_cost_usd += other.stream_cost_usd
        self.rolled_up_cost_usd += other.rolled_up_cost_usd


def _q(value: Decimal, quantum: Decimal = QUANTUM) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(quantum, rounding=ROUND_HALF_EVEN)


def _money(value: Any) -> Decimal:
    return _q(Decimal(str(value if value is not None else 0)))


def _div(a: Decimal, b: Decimal | int, quantum: Decimal = QUANTUM) -> Decimal:
    if not b:
        return _ZERO
    with localcontext() as ctx:
        ctx.prec = 60
        return _q(a / Decimal(b), quantum)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _raw_where(since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    cond = [ledger.c.created_at >= _utc(since)]
    if until is not None:
        cond.append(ledger.c.created_at < _utc(until))
    return cond


def _daily_where(since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    cond = [ledger_daily.c.day >= _utc(since).date()]
    if until is not None:  # the last day that has any part before `until`
        cond.append(ledger_daily.c.day <= (_utc(until) - timedelta(microseconds=1)).date())
    return cond


def _label(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def _sums(table: Any) -> list[Any]:
    count = func.count() if table is ledger else func.coalesce(func.sum(table.c.requests), 0)
    return [
        count.label("requests"),
        func.coalesce(func.sum(table.c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(table.c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(table.c.cost_usd), 0).label("cost_usd"),
    ]


def _detail_sums() -> list[Any]:
    """Raw rows' token details: cache reads and writes, reasoning tokens."""
    return [func.coalesce(func.sum(getattr(ledger.c, name)), 0).label(name) for name in _DETAILS]


def _details(t: Totals, r: Mapping[str, Any]) -> Totals:
    """``t`` with the token details of a raw-row sum (0 for a roll-up's)."""
    t.cached_tokens, t.cache_write_tokens, t.cache_write_1h_tokens, t.reasoning_tokens = (
        int(r.get(name) or 0) for name in _DETAILS
    )
    return t


async def _fetch(engine: AsyncEngine, query: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(query)).fetchall()]


def _tag_source(engine: AsyncEngine) -> Any:
    """One row per (request, tag); a request without tags joins to a NULL tag."""
    if engine.dialect.name == "postgresql":
        return (
            func.jsonb_array_elements_text(cast(ledger.c.tags, JSONB))
            .table_valued("value")
            .lateral("t")
        )
    return func.json_each(ledger.c.tags).table_valued("value").alias("t")


async def _grouped(
    engine: AsyncEngine, by: str, since: datetime, until: datetime | None
) -> dict[str, list[Any]]:
    """group -> [requests, prompt, completion, cost], raw rows and roll-ups merged."""
    out: dict[str, list[Any]] = {}

    def merge(rows: Iterable[dict[str, Any]], label: Any = None) -> None:
        for r in rows:
            name = label if label is not None else _label(r["g"])
            acc = out.setdefault(name, [0, 0, 0, _ZERO])
            acc[0] += int(r["requests"])
            acc[1] += int(r["prompt_tokens"])
            acc[2] += int(r["completion_tokens"])
            acc[3] += _money(r["cost_usd"])

    if by == "feature":
        tags = _tag_source(engine)
        tag = func.coalesce(tags.c.value, UNTAGGED)
        raw = (
            select(tag.label("g"), *_sums(ledger))
            .select_from(ledger.outerjoin(tags, true()))
            .where(*_raw_where(since, until))
            .group_by(tag)
        )
    else:
        col = GROUPS[by]
        raw = select(col.label("g"), *_sums(ledger)).where(*_raw_where(since, until)).group_by(col)
    merge(await _fetch(engine, raw))
    daily_col = _DAILY_GROUPS.get(by)
    if daily_col is not None:
        daily = (
            select(daily_col.label("g"), *_sums(ledger_daily))
            .where(*_daily_where(since, until))
            .group_by(daily_col)
        )
        merge(await _fetch(engine, daily))
    else:
        daily = select(*_sums(ledger_daily)).where(*_daily_where(since, until))
        merge([r for r in await _fetch(engine, daily) if int(r["requests"])], ROLLED_UP)
    return out


async def totals(engine: AsyncEngine, since: datetime, until: datetime | None = None) -> Totals:
    """Requests, tokens and cost in the window, raw rows and roll-ups together."""
    raw = select(
        *_sums(ledger),
        *_detail_sums(),
        func.coalesce(
            func.sum(case((ledger.c.stream == true(), ledger.c.cost_usd), else_=0)), 0
        ).label("stream_cost_usd"),
    ).where(*_raw_where(since, until))
    daily = select(*_sums(ledger_daily)).where(*_daily_where(since, until))
    (r,) = await _fetch(engine, raw)
    (d,) = await _fetch(engine, daily)
    rolled = _money(d["cost_usd"])
    out = Totals(
        requests=int(r["requests"]) + int(d["requests"]),
        prompt_tokens=int(r["prompt_tokens"]) + int(d["prompt_tokens"]),
        completion_tokens=int(r["completion_tokens"]) + int(d["completion_tokens"]),
        cost_usd=_money(r["cost_usd"]) + rolled,
        stream_cost_usd=_money(r["stream_cost_usd"]),
        rolled_up_cost_usd=rolled,
    )
    return _details(out, r)


async def spend_by(
    engine: AsyncEngine, by: str, since: datetime, until: datetime | None = None
) -> list[SpendRow]:
    """Cost per group in ``[since, until)``, most expensive first.

    ``by`` is one of :data:`BY`. ``feature`` groups by feature tag: a request with two tags
    counts in both groups (so the shares of a feature report can add up to more than 1),
    and requests without tags form ``(untagged)``. ``share`` is the group's cost over the
    window's total cost (each request once).
    """
    if by not in BY:
        raise ValueError(f"cannot group by {by!r}: expected one of {', '.join(BY)}")
    groups = await _grouped(engine, by, since, until)
    total = (await totals(engine, since, until)).cost_usd
    rows: list[SpendRow] = [
        SpendRow(
            group=name,
            requests=requests,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            cost_per_request=_div(cost, requests),
            share=_div(cost, total, _SHARE),
        )
        for name, (requests, prompt, completion, cost) in groups.items()
    ]
    rows.sort(key=lambda r: (-r["cost_usd"], -r["requests"], r["group"]))
    return rows


async def top_spenders(
    engine: AsyncEngine, by: str, since: datetime, n: int = 10, until: datetime | None = None
) -> list[SpendRow]:
    """The ``n`` groups that spent the most (see :func:`spend_by`)."""
    return (await spend_by(engine, by, since, until))[: max(0, n)]


async def waste(
    engine: AsyncEngine, since: datetime, until: datetime | None = None
) -> dict[str, Any]:
    """What was paid for without a useful answer, and the signs of avoidable spend.

    * ``failed_calls``: requests whose outcome is not ``ok`` (raw rows and roll-ups), with
      their cost (usually 0, except streams cut off midway and ``client_closed`` calls
      whose tokens were generated for no reader), and the same split by outcome.
    * ``retries``: extra upstream attempts, ``sum(attempts - 1)``, and how many requests
      needed more than one.
    * ``possible_hedges``: successful requests with more than one attempt. The ledger
      does not tell a retry after a failure from a hedged duplicate sent to race the
      first; either way the extra attempts may have been billed by the upstream.
    * ``fallbacks``: requests served by a fallback model, and what they cost.
    * ``estimated_usage``: requests whose tokens were counted by the gateway because the
      upstream reported none; their cost is an estimate.
    Unused reserved capacity (a self-hosted deployment's idle GPU hours) is not in the
    ledger: use ``estimate break-even`` with the measured utilisation for it.
    Attempts, fallbacks and estimated usage cover raw rows only (see the module docs).
    """
    where = _raw_where(since, until)
    failed = ledger.c.outcome != "ok"
    retried = ledger.c.attempts > 1
    q = select(
        func.count().label("requests"),
        func.coalesce(func.sum(ledger.c.cost_usd), 0).label("cost"),
        func.coalesce(func.sum(case((ledger.c.attempts > 1, ledger.c.attempts - 1), else_=0)), 0).label("retries"),
        func.coalesce(func.sum(case((retried, 1), else_=0)), 0).label("retried_requests"),
        func.coalesce(func.sum(case((and_(retried, ~failed), 1), else_=0)), 0).label("hedges"),
        func.coalesce(func.sum(case((and_(retried, ~failed), ledger.c.attempts - 1), else_=0)), 0).label("hedge_attempts"),
        func.coalesce(func.sum(case((ledger.c.fallback.is_not(None), 1), else_=0)), 0).label("fallbacks"),
        func.coalesce(func.sum(case((ledger.c.fallback.is_not(None), ledger.c.cost_usd), else_=0)), 0).label("fallback_cost"),
        func.coalesce(func.sum(case((ledger.c.usage_estimated == true(), 1), else_=0)), 0).label("estimated"),
        func.coalesce(func.sum(case((ledger.c.usage_estimated == true(), ledger.c.cost_usd), else_=0)), 0).label("estimated_cost"),
    ).where(*where)  # fmt: skip
    (r,) = await _fetch(engine, q)
    by_outcome = await _grouped(engine, "outcome", since, until)
    total = await totals(engine, since, until)
    failed_rows = {k: v for k, v in sorted(by_outcome.items()) if k != "ok"}
    failed_n = sum(v[0] for v in failed_rows.values())
    failed_cost = sum((v[3] for v in failed_rows.values()), _ZERO)
    raw_n = int(r["requests"])
    return {
        "requests": total.requests,
        "cost_usd": total.cost_usd,
        "failed_calls": {
            "requests": failed_n,
            "cost_usd": failed_cost,
            "share": _div(Decimal(failed_n), total.requests, _SHARE),
        },
        "failed_by_outcome": {
            k: {"requests": v[0], "cost_usd": v[3]} for k, v in failed_rows.items()
        },
        "retries": {
            "extra_attempts": int(r["retries"]),
            "requests": int(r["retried_requests"]),
        },
        "possible_hedges": {
            "requests": int(r["hedges"]),
            "extra_attempts": int(r["hedge_attempts"]),
        },
        "fallbacks": {"requests": int(r["fallbacks"]), "cost_usd": _money(r["fallback_cost"])},
        "estimated_usage": {
            "requests": int(r["estimated"]),
            "cost_usd": _money(r["estimated_cost"]),
            "share": _div(Decimal(int(r["estimated"])), raw_n, _SHARE),
        },
    }


def tokens_cost(
    price: Price,
    requests: int,
    prompt_tokens: int,
    cached_tokens: int,
    completion_tokens: int,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> Decimal:
    """What these summed tokens cost at ``price``: cache reads at the cached-input rate,
    cache writes at their TTL's write rate (:func:`interlock.spend.cost.tokens_usd`)."""
    return _q(
        tokens_usd(
            price,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
            requests,
        )
    )


def _chat_like(entry: TableEntry) -> bool:
    return entry.price.output > 0 and "embed" not in entry.id and "instruct" not in entry.id


def cheaper_alternative(
    table: PriceTable, entry: TableEntry, usage: tuple[int, ...] = (1, 500, 0, 200)
) -> TableEntry | None:
    """The cheapest table model to try instead of ``entry`` for this usage, or ``None``.

    ``usage`` is (requests, prompt, cached, completion tokens[, 5-minute and 1-hour cache
    writes]), as :func:`tokens_cost` takes them. Smaller members of the
    model's own family come first (``gpt-4o`` -> ``gpt-4o-mini``, ``gpt-4.1`` ->
    ``gpt-4.1-nano``); a model without one gets the cheapest chat model of the same vendor.
    Only models that would cost less than ``entry`` are returned. A what-if: whether the
    cheaper model is good enough for the traffic is for its owner to test.
    """

    def cost(e: TableEntry) -> Decimal:
        return tokens_cost(e.price, *usage)

    current = cost(entry)
    vendor = [
        e for e in table if e.provider == entry.provider and e.id != entry.id and _chat_like(e)
    ]
    for pool in ([e for e in vendor if e.id.startswith(entry.id + "-")], vendor):
        cheaper = [e for e in pool if cost(e) < current]
        if cheaper:
            return min(cheaper, key=lambda e: (cost(e), e.id))
    return None


def _resolve(
    table: PriceTable,
    model: str,
    deployment: str,
    upstream: Mapping[str, tuple[str, str | None]],
) -> TableEntry | None:
    if deployment in upstream:
        model_id, kind = upstream[deployment]
        return table.match(model_id, kind)
    for name in (deployment, model):
        if name and (hit := table.match(name)) is not None:
            return hit
    return None


async def optimisation(
    engine: AsyncEngine,
    since: datetime,
    table: PriceTable,
    *,
    until: datetime | None = None,
    upstream: Mapping[str, tuple[str, str | None]] | None = None,
    cache_hit_rate: Decimal = Decimal("0.2"),
    batch_discount: Decimal = Decimal("0.5"),
    targets: Mapping[str, str] | None = None,
) -> list[OptimisationRow]:
    """Per model: what-ifs for the monthly review, biggest possible saving first.

    These are what-ifs, not measurements:

    * **cheaper tier**: the same tokens priced at a cheaper model of the same vendor
      (:func:`cheaper_alternative`, or ``targets[table id]``) instead of what was paid;
    * **cache**: ``cache_hit_rate`` of the requests answered from the gateway's cache at no
      cost, so that share of the cost is saved;
    * **batching**: the non-streaming traffic of OpenAI and Anthropic models sent through
      their batch APIs at ``batch_discount`` off (roll-ups, whose stream flag is lost,
      count as streaming).

    ``upstream`` maps a deployment name to (upstream model id, provider kind) so the
    table entry is found as the gateway prices it; without it the deployment name, then
    the model alias, are looked up in the table. Models that cannot be priced get no
    cheaper-tier or batching figure.
    """
    upstream = upstream or {}
    targets = targets or {}
    where = _raw_where(since, until)
    raw = (
        select(
            ledger.c.model.label("model"),
            ledger.c.deployment.label("deployment"),
            ledger.c.stream.label("stream"),
            *_sums(ledger),
            *_detail_sums(),
        )
        .where(*where)
        .group_by(ledger.c.model, ledger.c.deployment, ledger.c.stream)
    )
    daily = (
        select(
            ledger_daily.c.model.label("model"),
            ledger_daily.c.deployment.label("deployment"),
            *_sums(ledger_daily),
        )
        .where(*_daily_where(since, until))
        .group_by(ledger_daily.c.model, ledger_daily.c.deployment)
    )
    # (model, deployment) -> totals; the non-streaming cost is what batching could touch.
    parts: dict[tuple[str, str], tuple[Totals, list[Decimal]]] = {}
    for r in [*await _fetch(engine, raw), *await _fetch(engine, daily)]:
        key = (_label(r["model"]), r["deployment"] or "")
        t, batchable = parts.setdefault(key, (Totals(), [_ZERO]))
        cost = _money(r["cost_usd"])
        t.add(
            _details(
                Totals(
                    requests=int(r["requests"]),
                    prompt_tokens=int(r["prompt_tokens"]),
                    completion_tokens=int(r["completion_tokens"]),
                    cost_usd=cost,
                ),
                r,
            )
        )
        if r.get("stream") is not None and not r["stream"]:
            batchable[0] += cost

    rows: dict[str, OptimisationRow] = {}
    for (model, deployment), (t, batchable) in sorted(parts.items()):
        entry = _resolve(table, model if model != NONE else "", deployment, upstream)
        usage = (
            t.requests,
            t.prompt_tokens,
            t.cached_tokens,
            t.completion_tokens,
            t.cache_write_tokens,
            t.cache_write_1h_tokens,
        )
        target: TableEntry | None = None
        if entry is not None:
            named = targets.get(entry.id)
            target = table.get(named) if named else cheaper_alternative(table, entry, usage)
        cheaper_cost = tokens_cost(target.price, *usage) if target is not None else None
        cheaper_saving = (
            max(_ZERO, t.cost_usd - cheaper_cost) if cheaper_cost is not None else _ZERO
        )
        can_batch = entry is not None and entry.provider in BATCH_VENDORS
        row = rows.get(model)
        if row is None:
            row = rows[model] = OptimisationRow(
                model=model, priced_as="", requests=0, cost_usd=_ZERO, cheaper_model="",
                cheaper_cost_usd=None, cheaper_saving_usd=_ZERO, cache_hit_rate=cache_hit_rate,
                cache_saving_usd=_ZERO, batchable_cost_usd=_ZERO, batch_saving_usd=_ZERO, best="",
            )  # fmt: skip
        row["priced_as"] = _join(row["priced_as"], entry.id if entry else "?")
        row["requests"] += t.requests
        row["cost_usd"] += t.cost_usd
        if target is not None and cheaper_cost is not None:
            row["cheaper_model"] = _join(row["cheaper_model"], target.id)
            row["cheaper_cost_usd"] = (row["cheaper_cost_usd"] or _ZERO) + cheaper_cost
            row["cheaper_saving_usd"] += cheaper_saving
        if can_batch:
            row["batchable_cost_usd"] += batchable[0]
    out = list(rows.values())
    for row in out:
        row["cache_saving_usd"] = _q(row["cost_usd"] * cache_hit_rate)
        row["batch_saving_usd"] = _q(row["batchable_cost_usd"] * batch_discount)
        options = {
            "cheaper tier": row["cheaper_saving_usd"],
            "cache": row["cache_saving_usd"],
            "batching": row["batch_saving_usd"],
        }
        best = max(options, key=lambda k: options[k])
        row["best"] = best if options[best] > 0 else "-"
    out.sort(key=lambda r: (-max(r["cheaper_saving_usd"], r["cache_saving_usd"],
                                 r["batch_saving_usd"]), r["model"]))  # fmt: skip
    return out


def _join(existing: str, name: str) -> str:
    names = [n for n in existing.split(",") if n]
    if name not in names:
        names.append(name)
    return ",".join(names)
