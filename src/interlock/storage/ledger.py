"""The ledger tables: idempotent batch inserts, roll-up, and the sums budgets and reports read."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Select, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import ledger, ledger_daily, ledger_reconcile

# The column order of spooled ledger rows (spend.ledger.LedgerRecord.to_row).
LEDGER_COLUMNS = (
    "request_id", "created_at", "key_id", "user_id", "team_id", "tags", "endpoint", "model",
    "deployment", "provider", "tier", "status", "outcome", "prompt_tokens", "completion_tokens",
    "cached_tokens", "reasoning_tokens", "usage_estimated", "cost_usd", "saved_usd", "attempts",
    "cache", "stream", "fallback", "latency_ms", "ttft_ms", "reserved_usd",
    "cache_write_tokens", "cache_write_1h_tokens",
)  # fmt: skip
_I_CREATED, _I_TAGS, _I_COST, _I_SAVED, _I_RESERVED = 1, 5, 18, 19, 26
_N = len(LEDGER_COLUMNS)
# Columns a row spooled by an older version lacks, and what they read then (None: NULL).
_PAD: tuple[Any, ...] = (*([None] * (_N - 2)), 0, 0)
# A final record replaces a replica_lost row of the same request (written from an intent
# when its process looked dead); nothing else is ever overwritten.
_UPSERT = (
    " ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in LEDGER_COLUMNS[1:])
    + " WHERE ledger.outcome = 'replica_lost' AND excluded.outcome <> 'replica_lost'"
)

# Rows that carry a worst case rather than what the provider billed, reconciled with the
# provider's usage (spend/reconcile.py): requests lost with their process, and attempts
# the gateway abandoned that hung past their bound (gateway/abandoned.py).
ABANDONED_HUNG = "abandoned_hung"
WORST_CASE_OUTCOMES = ("replica_lost", ABANDONED_HUNG)

_DAILY = {
    "key": ledger_daily.c.key_id,
    "user": ledger_daily.c.user_id,
    "team": ledger_daily.c.team_id,
    "model": ledger_daily.c.model,
    "deployment": ledger_daily.c.deployment,
}

GROUPS = {
    "key": ledger.c.key_id,
    "user": ledger.c.user_id,
    "team": ledger.c.team_id,
    "model": ledger.c.model,
    "deployment": ledger.c.deployment,
    "provider": ledger.c.provider,
    "outcome": ledger.c.outcome,
    "tier": ledger.c.tier,
}


class LedgerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def insert_rows(self, rows: list[list[Any]]) -> None:
        """Insert spooled rows (LEDGER_COLUMNS order; rows spooled by an older version may
        be shorter) with one executemany on the driver, ignoring request ids already
        present unless the stored row is a ``replica_lost`` placeholder and the new one
        is the request's real record. Bypasses SQL compilation per row: this is the
        ledger's steady-state write path."""
        if not rows:
            return
        cols = ", ".join(LEDGER_COLUMNS)
        if self._dialect == "postgresql":
            marks = ", ".join(f"${i}" for i in range(1, len(LEDGER_COLUMNS) + 1))
            params = [_pg_row(r) for r in rows]
        else:
            marks = ", ".join("?" for _ in LEDGER_COLUMNS)
            params = [_sqlite_row(r) for r in rows]
        sql = f"INSERT INTO ledger ({cols}) VALUES ({marks})" + _UPSERT  # noqa: S608
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows, ignoring request ids already present (replays are harmless)."""
        if not rows:
            return
        ins = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(ledger)
        stmt = ins.on_conflict_do_nothing(index_elements=["request_id"])
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(ledger))).scalar_one())

    async def rows(self, query: Select[Any]) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).fetchall()]

    async def spend_since(self, since: datetime, **where: str | None) -> Decimal:
        """Cost recorded since ``since`` for the given key/user/team/... (None: all)."""
        cond = [ledger.c.created_at >= since]
        for name, value in where.items():
            if value is not None:
                cond.append(GROUPS[name] == value)
        q = select(func.coalesce(func.sum(ledger.c.cost_usd), 0)).where(and_(*cond))
        # Days already rolled up (older than the retention) count from the aggregates.
        daily_cond = [ledger_daily.c.day >= since.date()]
        for name, value in where.items():
            if value is not None and name in _DAILY:
                daily_cond.append(_DAILY[name] == value)
        qd = select(func.coalesce(func.sum(ledger_daily.c.cost_usd), 0)).where(and_(*daily_cond))
        async with self._engine.connect() as conn:
            raw = Decimal(str((await conn.execute(q)).scalar_one()))
            rolled = Decimal(str((await conn.execute(qd)).scalar_one()))
        return raw + rolled

    # -- reconciliation (spend/reconcile.py) --------------------------------------------

    async def lost_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Worst-case rows (:data:`WORST_CASE_OUTCOMES`) created in [start, end), oldest
        first."""
        c = ledger.c
        q = (
            select(c.request_id, c.created_at, c.model, c.cost_usd, c.reserved_usd, c.outcome)
            .where(c.outcome.in_(WORST_CASE_OUTCOMES), c.created_at >= start, c.created_at < end)
            .order_by(c.created_at)
        )
        return await self.rows(q)

    async def known_between(
        self, start: datetime, end: datetime, deployments: list[str]
    ) -> dict[str, tuple[Decimal, int, int, int]]:
        """Per deployment, the records (not worst-case rows) in [start, end): cost, prompt
        and completion tokens, rows."""
        c = ledger.c
        q = (
            select(
                c.deployment,
                func.coalesce(func.sum(c.cost_usd), 0),
                func.coalesce(func.sum(c.prompt_tokens), 0),
                func.coalesce(func.sum(c.completion_tokens), 0),
                func.count(),
            )
            .where(
                c.outcome.not_in(WORST_CASE_OUTCOMES),
                c.created_at >= start,
                c.created_at < end,
                c.deployment.in_(deployments),
            )
            .group_by(c.deployment)
        )
        async with self._engine.connect() as conn:
            got = (await conn.execute(q)).fetchall()
        return {r[0]: (Decimal(str(r[1])), int(r[2]), int(r[3]), int(r[4])) for r in got if r[0]}

    async def rewrite_lost(self, updates: list[dict[str, Any]], log: list[dict[str, Any]]) -> None:
        """Set the cost (and what else was learned) of worst-case rows, and append what was
        done to ``ledger_reconcile``, in one transaction. A row that meanwhile became a real
        record (its process was alive after all) is left alone."""
        c = ledger.c
        async with self._engine.begin() as conn:
            for u in updates:
                values = {k: v for k, v in u.items() if k != "request_id"}
                await conn.execute(
                    update(ledger)
                    .where(c.request_id == u["request_id"], c.outcome.in_(WORST_CASE_OUTCOMES))
                    .values(**values)
                )
            if log:
                await conn.execute(insert(ledger_reconcile), log)

    async def reconcile_log(self, limit: int = 100) -> list[dict[str, Any]]:
        q = select(ledger_reconcile).order_by(ledger_reconcile.c.id.desc()).limit(limit)
        return await self.rows(q)

    def tag_filter(self, tag: str) -> Any:
        """A WHERE clause: the record carries feature tag ``tag``."""
        if self._dialect == "postgresql":
            return text("CAST(ledger.tags AS JSONB) ? :tag").bindparams(tag=tag)
        return text(
            "EXISTS (SELECT 1 FROM json_each(ledger.tags) WHERE json_each.value = :tag)"
        ).bindparams(tag=tag)

    async def spend_since_tag(self, since: datetime, tag: str) -> Decimal:
        q = select(func.coalesce(func.sum(ledger.c.cost_usd), 0)).where(
            ledger.c.created_at >= since, self.tag_filter(tag)
        )
        async with self._engine.connect() as conn:
            return Decimal(str((await conn.execute(q)).scalar_one()))

    async def roll_up(self, before: datetime) -> int:
        """Move rows older than ``before`` into daily aggregates; returns rows rolled up."""
        day = func.date(ledger.c.created_at)
        agg = (
            select(
                day.label("day"),
                func.coalesce(ledger.c.key_id, "").label("key_id"),
                func.coalesce(ledger.c.user_id, "").label("user_id"),
                func.coalesce(ledger.c.team_id, "").label("team_id"),
                func.coalesce(ledger.c.model, "").label("model"),
                func.coalesce(ledger.c.deployment, "").label("deployment"),
                ledger.c.outcome,
                func.count().label("requests"),
                func.sum(ledger.c.prompt_tokens).label("prompt_tokens"),
                func.sum(ledger.c.completion_tokens).label("completion_tokens"),
                func.sum(ledger.c.cost_usd).label("cost_usd"),
                func.sum(ledger.c.saved_usd).label("saved_usd"),
            )
            .where(ledger.c.created_at < before)
            .group_by(day, ledger.c.key_id, ledger.c.user_id, ledger.c.team_id,
                      ledger.c.model, ledger.c.deployment, ledger.c.outcome)
        )  # fmt: skip
        async with self._engine.begin() as conn:
            if self._dialect == "postgresql":
                # One roll-up at a time across replicas, or rows could be counted twice.
                await conn.execute(text("SELECT pg_advisory_xact_lock(74210002)"))
            groups = (await conn.execute(agg)).fetchall()
            if not groups:
                return 0
            ins = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(
                ledger_daily
            )
            stmt = ins.on_conflict_do_update(
                index_elements=[
                    "day",
                    "key_id",
                    "user_id",
                    "team_id",
                    "model",
                    "deployment",
                    "outcome",
                ],
                set_={
                    c: getattr(ledger_daily.c, c) + getattr(ins.excluded, c)
                    for c in (
                        "requests",
                        "prompt_tokens",
                        "completion_tokens",
                        "cost_usd",
                        "saved_usd",
                    )
                },
            )
            rows = []
            for g in groups:
                m = dict(g._mapping)
                if isinstance(m["day"], str):
                    m["day"] = date.fromisoformat(m["day"])
                rows.append(m)
            await conn.execute(stmt, rows)
            res = await conn.execute(delete(ledger).where(ledger.c.created_at < before))
            return int(res.rowcount or 0)


def _padded(r: list[Any]) -> list[Any]:
    row = list(r[:_N])
    if len(row) < _N:
        row += _PAD[len(row) :]
    return row


def _sqlite_row(r: list[Any]) -> tuple[Any, ...]:
    row = _padded(r)
    row[_I_TAGS] = orjson.dumps(row[_I_TAGS]).decode()
    return tuple(row)


def _pg_row(r: list[Any]) -> tuple[Any, ...]:
    row = _padded(r)
    row[_I_CREATED] = datetime.fromisoformat(row[_I_CREATED]).replace(tzinfo=UTC)
    row[_I_TAGS] = orjson.dumps(row[_I_TAGS]).decode()
    row[_I_COST] = Decimal(row[_I_COST])
    row[_I_SAVED] = Decimal(row[_I_SAVED])
    if row[_I_RESERVED] is not None:
        row[_I_RESERVED] = Decimal(row[_I_RESERVED])
    return tuple(row)
