"""``interlock report routing``: what model selection saved, from the ledger.

Per tier: requests and their share of traffic, what they cost, and what the same tokens
would have cost at the large tier's price (the always-large baseline). Each request is
re-priced with its own prompt, cached and completion tokens, so the baseline is exact for
the traffic that was served — not a guess at how long a large model's answers would have
been. Rows of escalated first attempts (outcome ``escalated``) count in their tier's cost
(they were paid for) but not in the baseline (always-large would not have made them).

Only raw ledger rows carry the tier; days already rolled up are not in this report.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.prices import Price
from interlock.spend.reports import _div, _fetch, _money, _raw_where, tokens_cost
from interlock.storage.tables import ledger

__all__ = ["TierRow", "baseline_subject", "routing_savings"]

_SHARE = Decimal("0.0001")
_ZERO = Decimal(0)
ALL = "(all)"


class TierRow(TypedDict):
    tier: str
    requests: int  # answered requests (escalated first attempts not counted)
    escalated: int  # first attempts retried on a larger tier
    share: Decimal  # of the requests
    cost_usd: Decimal
    cost_share: Decimal
    large_cost_usd: Decimal | None  # the same tokens at the large tier's price
    saved_usd: Decimal | None


def baseline_subject(alias: str | None) -> str:
    """What the report's summary line compares with: the tiered alias whose large tier is
    the baseline, or, when the configuration has none, that there is no baseline (the
    ledger's tiers, if any, are then from aliases no longer tiered)."""
    if alias is None:
        return (
            "no tiered alias is configured (models.<alias>.tiers), so there is no "
            "always-large baseline; requests to untiered aliases are not in this report"
        )
    return f"baseline: every request's tokens at the large tier of '{alias}'"


async def routing_savings(
    engine: AsyncEngine, since: datetime, until: datetime | None, large: Price | None
) -> list[TierRow]:
    """One row per tier (most traffic first), then the ``(all)`` total."""
    answered = ledger.c.outcome != "escalated"

    def only_answered(col: Any) -> Any:
        return func.coalesce(func.sum(case((answered, col), else_=0)), 0)

    q = (
        select(
            ledger.c.tier.label("tier"),
            func.coalesce(func.sum(case((answered, 1), else_=0)), 0).label("requests"),
            func.coalesce(func.sum(case((answered, 0), else_=1)), 0).label("escalated"),
            only_answered(ledger.c.prompt_tokens).label("prompt_tokens"),
            only_answered(ledger.c.cached_tokens).label("cached_tokens"),
            only_answered(ledger.c.completion_tokens).label("completion_tokens"),
            func.coalesce(func.sum(ledger.c.cost_usd), 0).label("cost_usd"),
        )
        .where(*_raw_where(since, until), ledger.c.tier.is_not(None))
        .group_by(ledger.c.tier)
    )
    raw = await _fetch(engine, q)
    total_req = sum(int(r["requests"]) for r in raw)
    total_cost = sum((_money(r["cost_usd"]) for r in raw), _ZERO)
    rows: list[TierRow] = []
    for r in raw:
        cost = _money(r["cost_usd"])
        baseline = (
            tokens_cost(
                large,
                int(r["requests"]),
                int(r["prompt_tokens"]),
                int(r["cached_tokens"]),
                int(r["completion_tokens"]),
            )
            if large is not None
            else None
        )
        rows.append(
            TierRow(
                tier=str(r["tier"]),
                requests=int(r["requests"]),
                escalated=int(r["escalated"]),
                share=_div(Decimal(int(r["requests"])), total_req, _SHARE),
                cost_usd=cost,
                cost_share=_div(cost, total_cost, _SHARE),
                large_cost_usd=baseline,
                saved_usd=baseline - cost if baseline is not None else None,
            )
        )
    rows.sort(key=lambda t: (-t["requests"], t["tier"]))
    base = sum((t["large_cost_usd"] or _ZERO for t in rows), _ZERO) if large is not None else None
    rows.append(
        TierRow(
            tier=ALL,
            requests=total_req,
            escalated=sum(t["escalated"] for t in rows),
            share=Decimal(1) if total_req else _ZERO,
            cost_usd=total_cost,
            cost_share=Decimal(1) if total_cost else _ZERO,
            large_cost_usd=base,
            saved_usd=base - total_cost if base is not None else None,
        )
    )
    return rows
