"""The budgets table (budgets created through the admin API)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import budgets

log = logging.getLogger("interlock.storage")

# The largest amount of US dollars a budget may name (the admin API and the settings
# refuse more). It fits the Numeric(20, 10) columns (below 1e10) and, in nano-dollars, a
# signed 64-bit Redis counter (1e18 < 2^63): a billion dollars a window is "no limit".
MAX_USD = Decimal(1_000_000_000)


def stored_usd(value: Any, row_id: str) -> Decimal:
    """A stored amount as the enforcer may use it. A row written before the bounds existed
    (1.2e308 was accepted once, in SQLite) is read as the bound, and said so, rather than
    breaking every listing, the dashboard and the reservation arithmetic that touch it."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = Decimal("NaN")
    if amount.is_finite() and 0 <= amount <= MAX_USD:
        return amount
    bounded = Decimal(0) if amount.is_finite() and amount < 0 else MAX_USD
    log.warning(
        "budget %s stores an amount out of bounds (%.40s): read as %s",
        row_id,
        str(value),
        bounded,
        extra={"event": "budget_amount_out_of_bounds", "budget_id": row_id},
    )
    return bounded


class BudgetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(budgets).order_by(budgets.c.created_at))).fetchall()
        out = []
        for r in rows:
            m = dict(r._mapping)
            for f in ("limit_usd", "budget_usd"):
                if m[f] is not None:
                    m[f] = stored_usd(m[f], str(m.get("id")))
            out.append(m)
        return out

    async def insert(self, row: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(budgets.insert().values(**row, created_at=datetime.now(UTC)))

    async def delete(self, budget_id: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(delete(budgets).where(budgets.c.id == budget_id))
        return bool(res.rowcount)
