"""Cost estimates: a month of traffic before it exists, from the ledger, and self-hosting.

All arithmetic is exact :class:`~decimal.Decimal`; money is rounded half-even to 1e-10 USD
(:data:`interlock.spend.cost.QUANTUM`) only at the end of each figure.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.cost import QUANTUM
from interlock.spend.prices import Price, PriceTable, to_decimal
from interlock.spend.reports import optimisation, tokens_cost, totals

__all__ = [
    "DEFAULT_BUFFER",
    "HOURS_PER_MONTH",
    "break_even",
    "compare",
    "from_ledger",
    "monthly_estimate",
    "request_cost",
]

# Real traffic runs above the plan: longer prompts, retries, growth. 2-3x is the usual margin.
DEFAULT_BUFFER = Decimal("2.5")
HOURS_PER_MONTH = Decimal(730)  # 8760 / 12
_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
_RATIO = Decimal("0.01")


def _q(value: Decimal, quantum: Decimal = QUANTUM) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return value.quantize(quantum, rounding=ROUND_HALF_EVEN)


def _check_counts(requests: int, input_tokens: int, output_tokens: int) -> None:
    if requests < 0 or input_tokens < 0 or output_tokens < 0:
        raise ValueError("requests and token counts must be non-negative")


def request_cost(price: Price, input_tokens: int, output_tokens: int) -> Decimal:
    """One request's list cost (no cache discount): tokens x rates + the per-request fee."""
    with localcontext() as ctx:
        ctx.prec = 60
        return (
            input_tokens * price.input + output_tokens * price.output
        ) / _MTOK + price.per_request


def monthly_estimate(
    requests_per_month: int,
    input_tokens: int,
    output_tokens: int,
    price: Price,
    buffer: Decimal = DEFAULT_BUFFER,
) -> dict[str, Decimal]:
    """A month's cost: requests x (input x input rate + output x output rate + fee).

    ``base`` is that figure; ``buffered`` multiplies it by ``buffer`` (default 2.5, as
    real traffic brings longer prompts, retries and growth that a plan leaves out).
    """
    _check_counts(requests_per_month, input_tokens, output_tokens)
    if buffer < 1:
        raise ValueError("buffer must be at least 1")
    per_request = request_cost(price, input_tokens, output_tokens)
    with localcontext() as ctx:
        ctx.prec = 60
        base = per_request * requests_per_month
        return {
            "per_request": _q(per_request),
            "base": _q(base),
            "buffered": _q(base * buffer),
        }


def compare(
    models: list[str],
    requests_per_month: int,
    input_tokens: int,
    output_tokens: int,
    table: PriceTable,
    buffer: Decimal = DEFAULT_BUFFER,
) -> list[dict[str, Any]]:
    """:func:`monthly_estimate` for each model in the price table, cheapest first.

    ``vs_cheapest`` is each model's cost over the cheapest one's (1.00 for it).
    Raises :class:`KeyError` naming a model the table does not list.
    """
    rows: list[dict[str, Any]] = []
    for model in dict.fromkeys(models):
        entry = table.match(model)
        if entry is None:
            raise KeyError(f"no price for model {model!r} in the price table {table.version}")
        est = monthly_estimate(requests_per_month, input_tokens, output_tokens, entry.price, buffer)
        rows.append(
            {
                "model": model,
                "priced_as": entry.id,
                "provider": entry.provider,
                "input_per_mtok": entry.price.input,
                "output_per_mtok": entry.price.output,
                **est,
            }
        )
    rows.sort(key=lambda r: (r["base"], r["model"]))
    cheapest = rows[0]["base"] if rows else _ZERO
    for r in rows:
        r["vs_cheapest"] = _q(r["base"] / cheapest, _RATIO) if cheapest else None
    return rows


def _days_in_month(moment: datetime) -> int:
    return calendar.monthrange(moment.year, moment.month)[1]


async def from_ledger(
    engine: AsyncEngine,
    days: int,
    table: PriceTable,
    *,
    now: datetime | None = None,
    cheaper_tier: str | None = None,
    cache_hit_rate: Decimal = _ZERO,
    upstream: Mapping[str, tuple[str, str | None]] | None = None,
) -> dict[str, Any]:
    """Project this month's cost from the last ``days`` days of recorded traffic.

    ``projected_month`` = observed cost / ``days`` x the days in ``now``'s month. What-ifs
    on the projection, each alone:

    * ``cheaper_tier``: every recorded token priced at that model instead (cached tokens at
      its cached-input rate);
    * ``cache_hit_rate``: that share of requests answered from the gateway's cache at no
      cost;
    * ``optimisation``: per model, the best of the :func:`~interlock.spend.reports.optimisation`
      what-ifs (cheaper model of the same vendor, 20 % cache hits, batching), projected.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if not 0 <= cache_hit_rate <= 1:
        raise ValueError("cache_hit_rate must be between 0 and 1")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    since = now - timedelta(days=days)
    t = await totals(engine, since, now)
    month_days = _days_in_month(now)
    with localcontext() as ctx:
        ctx.prec = 60
        scale = Decimal(month_days) / days
        projected = t.cost_usd * scale
        out: dict[str, Any] = {
            "since": since.isoformat(),
            "until": now.isoformat(),
            "days": days,
            "requests": t.requests,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            # Parts of the two above, from raw rows (roll-ups keep only the totals).
            "cached_tokens": t.cached_tokens,
            "cache_write_tokens": t.cache_write_tokens,
            "cache_write_1h_tokens": t.cache_write_1h_tokens,
            "reasoning_tokens": t.reasoning_tokens,
            "observed_cost_usd": t.cost_usd,
            "cost_per_day": _q(t.cost_usd / days),
            "days_in_month": month_days,
            "projected_requests": int((t.requests * scale).to_integral_value(ROUND_HALF_EVEN)),
            "projected_month_usd": _q(projected),
            "what_if": {},
        }
        what_if: dict[str, Any] = out["what_if"]
        if cheaper_tier is not None:
            entry = table.match(cheaper_tier)
            if entry is None:
                raise KeyError(f"no price for model {cheaper_tier!r} in the price table")
            cost = tokens_cost(
                entry.price,
                t.requests,
                t.prompt_tokens,
                t.cached_tokens,
                t.completion_tokens,
                t.cache_write_tokens,
                t.cache_write_1h_tokens,
            )
            month = cost * scale
            what_if["cheaper_tier"] = {
                "model": entry.id,
                "projected_month_usd": _q(month),
                "saving_usd": _q(projected - month),
            }
        if cache_hit_rate:
            what_if["cache"] = {
                "hit_rate": cache_hit_rate,
                "projected_month_usd": _q(projected * (1 - cache_hit_rate)),
                "saving_usd": _q(projected * cache_hit_rate),
            }
        rows = await optimisation(engine, since, table, until=now, upstream=upstream)
        best = sum(
            (
                max(r["cheaper_saving_usd"], r["cache_saving_usd"], r["batch_saving_usd"])
                for r in rows
            ),
            _ZERO,
        )
        what_if["optimisation"] = {"best_per_model_saving_usd": _q(best * scale)}
    return out


def break_even(
    api_price: Price,
    tokens_in_per_request: int,
    tokens_out_per_request: int,
    gpu_usd_per_hour: Decimal | int | str | float,
    tokens_per_second: Decimal | int | str | float,
    utilisation: Decimal | int | str | float,
    hours_per_month: Decimal = HOURS_PER_MONTH,
) -> dict[str, Any]:
    """When a self-hosted deployment becomes cheaper than the API: the break-even volume.

    Assumptions (state them next to the number):

    * ``tokens_per_second`` is one GPU's (or one replica's, priced at ``gpu_usd_per_hour``)
      aggregate throughput over all concurrent requests, prompt and completion tokens
      alike; prefill is usually much cheaper than decoding, so a measured figure for your
      mix beats a spec-sheet one;
    * ``utilisation`` (0-1] is the share of paid hours spent serving: a GPU serves at most
      ``tokens_per_second x 3600 x hours_per_month x utilisation`` tokens a month;
    * at least one GPU runs all month (730 hours): a fixed ``gpu_usd_per_hour x 730``,
      paid whatever the volume; more GPUs are added as volume needs them;
    * the API is charged per token at its list price (no cache or batch discount);
      engineering, storage and network costs of self-hosting are left out.

    ``break_even_requests_per_month`` is the smallest monthly volume at which the API costs
    at least one GPU-month (``gpu_monthly_usd / api_cost_per_request``, rounded up). When
    that volume is more than one GPU can serve (the API's price per token is below the
    self-hosted price per token at this utilisation) self-hosting never wins and it is
    ``None``.
    """
    _check_counts(0, tokens_in_per_request, tokens_out_per_request)
    tokens = tokens_in_per_request + tokens_out_per_request
    if tokens <= 0:
        raise ValueError("a request must have some tokens")
    hourly = to_decimal(gpu_usd_per_hour)
    rate = to_decimal(tokens_per_second)
    share = to_decimal(utilisation)
    if hourly <= 0:
        raise ValueError("gpu_usd_per_hour must be positive")
    if rate <= 0:
        raise ValueError("tokens_per_second must be positive")
    if not 0 < share <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    with localcontext() as ctx:
        ctx.prec = 60
        api_per_request = request_cost(api_price, tokens_in_per_request, tokens_out_per_request)
        api_per_mtok = api_per_request * _MTOK / tokens
        self_per_mtok = hourly * _MTOK / (rate * 3600 * share)
        self_per_request = self_per_mtok * tokens / _MTOK
        gpu_month = hourly * hours_per_month
        capacity_tokens = rate * 3600 * hours_per_month * share
        capacity_requests = capacity_tokens / tokens
        volume: int | None = None
        if api_per_request > 0:
            needed = (gpu_month / api_per_request).to_integral_value(ROUND_CEILING)
            if needed <= capacity_requests:
                volume = int(needed)
        return {
            "api_cost_per_request": _q(api_per_request),
            "api_cost_per_1M": _q(api_per_mtok),
            "self_hosted_cost_per_request": _q(self_per_request),
            "self_hosted_cost_per_1M": _q(self_per_mtok),
            "gpu_monthly_usd": _q(gpu_month),
            "requests_per_gpu_month": int(capacity_requests),
            "break_even_requests_per_month": volume,
            "break_even_tokens_per_month": None if volume is None else volume * tokens,
            "assumptions": {
                "tokens_per_request": tokens,
                "gpu_usd_per_hour": hourly,
                "tokens_per_second": rate,
                "utilisation": share,
                "hours_per_month": hours_per_month,
            },
        }
