"""The budgets table (budgets created through the admin API)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import budgets


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
                    m[f] = Decimal(str(m[f]))
            out.append(m)
        return out

    async def insert(self, row: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(budgets.insert().values(**row, created_at=datetime.now(UTC)))

    async def delete(self, budget_id: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(delete(budgets).where(budgets.c.id == budget_id))
        return bool(res.rowcount)
