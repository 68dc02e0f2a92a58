"""The ledger table on SQLite and PostgreSQL: a real record replaces a replica_lost
placeholder (never the reverse), and rows spooled by an older version still insert."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.ledger import LedgerRecord, lost_record
from interlock.storage.ledger import LedgerStore
from interlock.storage.tables import ledger


async def _row(engine: AsyncEngine, request_id: str) -> dict:
    async with engine.connect() as conn:
        got = (await conn.execute(select(ledger).where(ledger.c.request_id == request_id))).one()
    return dict(got._mapping)


async def test_final_record_replaces_a_replica_lost_row_and_never_the_reverse(
    engine: AsyncEngine,
) -> None:
    store = LedgerStore(engine)
    real = LedgerRecord(request_id="a", endpoint="chat", status=200, outcome="ok",
                        cost_usd=Decimal("0.01"), completion_tokens=7,
                        reserved_usd=Decimal("0.2"))  # fmt: skip
    placeholder = lost_record(
        LedgerRecord(request_id="a", endpoint="chat", status=200, outcome="ok"), Decimal("0.2")
    )
    await store.insert_rows([placeholder.to_row()])
    got = await _row(engine, "a")
    assert got["outcome"] == "replica_lost" and got["status"] == 0
    assert got["cost_usd"] == Decimal("0.2") and got["usage_estimated"]
    await store.insert_rows([real.to_row()])  # the request did finish: its record wins
    await store.insert_rows([placeholder.to_row()])  # a replay again: the real row stays
    await store.insert_rows([real.to_row()])  # and a replayed real record changes nothing
    got = await _row(engine, "a")
    assert got["outcome"] == "ok" and got["cost_usd"] == Decimal("0.01")
    assert got["completion_tokens"] == 7 and got["reserved_usd"] == Decimal("0.2")
    assert await store.count() == 1


async def test_rows_spooled_by_the_previous_version_insert(engine: AsyncEngine) -> None:
    store = LedgerStore(engine)
    old = LedgerRecord(request_id="old", endpoint="chat", status=200, outcome="ok").to_row()[:-1]
    await store.insert_rows([old])
    assert (await _row(engine, "old"))["reserved_usd"] is None
