"""Spend today by team, feature and model, against the budgets that cover them.

Read from the ledger (the record of what was charged), so every worker and replica
agrees; the ledger is written behind the request path, so these figures trail the
traffic by up to ``spend.ledger_flush_interval_s``. The queries are grouped sums over
today's rows, and several browser tabs poll every second or two: one result is shared
for :data:`TTL_S` seconds per process, computed by one caller at a time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.enforcer import BudgetEnforcer
from interlock.spend.reports import spend_by, totals
from interlock.storage.tables import ledger

TTL_S = 3.0
MAX_ROWS = 12  # per dimension: the biggest spenders (the CLI reports the rest)
MAX_BUDGETS = 50
# Dashboard dimension -> (report grouping, budget scope that covers it)
DIMENSIONS = {"team": ("team", "team"), "feature": ("feature", "tag"), "model": ("model", None)}


def day_start(now: float) -> datetime:
    """Midnight UTC today: the day the ledger and daily budgets count in by default."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _usd(value: Decimal) -> str:
    return f"{value:.6f}"


async def _saved_since(engine: AsyncEngine, since: datetime) -> tuple[Decimal, int]:
    q = select(
        func.coalesce(func.sum(ledger.c.saved_usd), 0),
        func.count().filter(ledger.c.cache.like("hit%")),
    ).where(ledger.c.created_at >= since)
    async with engine.connect() as conn:
        saved, hits = (await conn.execute(q)).one()
    return Decimal(str(saved)), int(hits or 0)


async def budget_rows(enforcer: BudgetEnforcer) -> list[dict[str, Any]]:
    """Each budget's live status (shared-state counters, not the ledger), fullest first."""
    rows = []
    for b in list(enforcer.budgets)[:MAX_BUDGETS]:
        st = await enforcer.status(b)
        cap = st["limit_usd"] or st["budget_usd"]
        used = Decimal(st["spent_usd"]) / Decimal(cap) if cap and Decimal(cap) > 0 else None
        rows.append({**st, "description": b.describe(), "used": float(used) if used else 0.0})
    rows.sort(key=lambda r: -float(r["used"]))
    return rows


def _cover(budgets: list[dict[str, Any]], scope: str | None, subject: str) -> dict[str, Any] | None:
    if scope is None:
        return None
    found = [b for b in budgets if b["scope"] == scope and b["subject"] == subject]
    daily = [b for b in found if b["window"] == "daily"]
    best = daily or found
    return best[0] if best else None


async def spend_today(
    engine: AsyncEngine, budgets: list[dict[str, Any]], now: float
) -> dict[str, Any]:
    since = day_start(now)
    tot = await totals(engine, since)
    saved, hits = await _saved_since(engine, since)
    out: dict[str, Any] = {
        "since": since.isoformat(),
        "total_usd": _usd(tot.cost_usd),
        "requests": tot.requests,
        "saved_usd": _usd(saved),
        "cache_hits": hits,
        "as_of": now,
    }
    for name, (by, scope) in DIMENSIONS.items():
        rows = []
        for r in (await spend_by(engine, by, since))[:MAX_ROWS]:
            cover = _cover(budgets, scope, r["group"])
            rows.append(
                {
                    "group": r["group"],
                    "requests": r["requests"],
                    "cost_usd": _usd(r["cost_usd"]),
                    "share": float(r["share"]),
                    "budget": None
                    if cover is None
                    else {
                        "id": cover["id"],
                        "window": cover["window"],
                        "spent_usd": cover["spent_usd"],
                        "limit_usd": cover["limit_usd"] or cover["budget_usd"],
                        "used": cover["used"],
                    },
                }
            )
        out[f"by_{name}"] = rows
    return out


class SpendCache:
    """One process's spend figures, refreshed at most every :data:`TTL_S` seconds."""

    def __init__(self, engine: AsyncEngine, enforcer: BudgetEnforcer) -> None:
        self._engine = engine
        self._enforcer = enforcer
        self._lock = asyncio.Lock()
        self._at = 0.0
        self._value: tuple[dict[str, Any], list[dict[str, Any]]] | None = None

    async def get(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(spend today, budgets)."""
        async with self._lock:
            now = time.time()
            if self._value is None or now - self._at >= TTL_S:
                budgets = await budget_rows(self._enforcer)
                self._value = (await spend_today(self._engine, budgets, now), budgets)
                self._at = now
            return self._value
