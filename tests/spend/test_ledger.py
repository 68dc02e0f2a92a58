"""The ledger: spooled first, stored in batches, replayed after outages and crashes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.settings import StorageSettings
from interlock.spend.ledger import LedgerRecord, LedgerWriter
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore


def rec(i: int, cost: str = "0.0001") -> LedgerRecord:
    return LedgerRecord(request_id=f"req-{i}", endpoint="chat", status=200, outcome="ok",
                        key_id="k1", model="m", cost_usd=Decimal(cost), prompt_tokens=10)  # fmt: skip


class FlakyStore(LedgerStore):
    """A store whose database can be switched off."""

    down = False

    async def insert_rows(self, rows: list) -> None:  # type: ignore[override]
        if self.down:
            raise ConnectionError("database unreachable")
        await super().insert_rows(rows)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncEngine:
    eng = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/l.db"))
    await run_migrations(eng)
    yield eng  # type: ignore[misc]
    await eng.dispose()


async def test_records_reach_the_database_in_batches(engine: AsyncEngine, tmp_path: Path) -> None:
    store = LedgerStore(engine)
    writer = LedgerWriter(store, str(tmp_path / "spool"), flush_interval_s=0.05)
    await writer.start()
    for i in range(1200):
        writer.record(rec(i))
    assert await writer.flush()
    assert await store.count() == 1200
    assert writer.pending == 0
    total = await store.spend_since(rec(0).created_at.replace(year=2000), key="k1")
    assert total == Decimal("0.12")  # exact: Decimal end to end
    await writer.stop()
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # fully flushed: nothing left


async def test_database_outage_loses_and_duplicates_nothing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    store = FlakyStore(engine)
    writer = LedgerWriter(store, str(tmp_path / "spool"), flush_interval_s=0.02)
    await writer.start()
    for i in range(50):
        writer.record(rec(i))
    assert await writer.flush()
    store.down = True
    for i in range(50, 300):
        writer.record(rec(i))
    assert not await writer.flush()
    assert not writer.healthy and writer.pending == 250
    store.down = False
    await asyncio.sleep(0.5)  # the background flusher retries with backoff
    assert await writer.flush() and writer.healthy
    # A replay of everything (as after a crash before a checkpoint) adds nothing.
    await store.insert_many([{**r.to_json(), "cost_usd": r.cost_usd, "created_at": r.created_at,
                              "saved_usd": r.saved_usd} for r in (rec(i) for i in range(300))])  # fmt: skip
    assert await store.count() == 300
    await writer.stop()


async def test_spool_of_a_killed_process_is_replayed(engine: AsyncEngine, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    db = engine.url.database
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from decimal import Decimal
        from interlock.settings import StorageSettings
        from interlock.spend.ledger import LedgerRecord, LedgerWriter
        from interlock.storage.engine import create_engine
        from interlock.storage.ledger import LedgerStore

        async def main():
            eng = create_engine(StorageSettings(url="sqlite+aiosqlite:///{db}"))
            w = LedgerWriter(LedgerStore(eng), {str(spool)!r}, flush_interval_s=3600)
            await w.start()
            await asyncio.sleep(0.2)
            for i in range(500):
                w.record(LedgerRecord(request_id=f"crash-{{i}}", endpoint="chat", status=200,
                                      outcome="ok", cost_usd=Decimal("0.001")))
            print("spooled", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no flush, no cleanup

        asyncio.run(main())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL and "spooled" in proc.stdout, proc.stderr
    store = LedgerStore(engine)
    assert await store.count() == 0
    survivor = LedgerWriter(store, str(spool), flush_interval_s=0.05)
    await survivor.start()
    assert await survivor.replay_orphans() == 1
    assert await store.count() == 500
    await survivor.stop()
    assert await store.count() == 500
    assert not [p for p in spool.iterdir() if p.suffix == ".jsonl"]


async def test_live_process_spool_is_not_taken(engine: AsyncEngine, tmp_path: Path) -> None:
    a = LedgerWriter(LedgerStore(engine), str(tmp_path / "spool"), flush_interval_s=3600)
    b = LedgerWriter(LedgerStore(engine), str(tmp_path / "spool"), flush_interval_s=3600)
    await a.start()
    await b.start()
    a.record(rec(1))
    assert await b.replay_orphans() == 0  # a is alive and holds its lock
    await a.stop()
    await b.stop()
    assert await LedgerStore(engine).count() == 1


async def test_roll_up_keeps_totals(engine: AsyncEngine, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    store = LedgerStore(engine)
    old = datetime.now(UTC) - timedelta(days=100)
    rows = []
    for i in range(10):
        r = rec(i, "0.5")
        r.created_at = old
        rows.append(
            {
                **r.to_json(),
                "cost_usd": r.cost_usd,
                "saved_usd": r.saved_usd,
                "created_at": r.created_at,
            }
        )
    await store.insert_many(rows)
    assert await store.roll_up(datetime.now(UTC) - timedelta(days=90)) == 10
    assert await store.count() == 0
    from sqlalchemy import func, select

    from interlock.storage.tables import ledger_daily

    got = await store.rows(
        select(
            func.sum(ledger_daily.c.cost_usd).label("cost"),
            func.sum(ledger_daily.c.requests).label("n"),
        )
    )
    assert Decimal(str(got[0]["cost"])) == Decimal("5.0") and got[0]["n"] == 10


async def test_long_outage_overflows_to_the_spool_file(engine: AsyncEngine, tmp_path: Path) -> None:
    store = FlakyStore(engine)
    writer = LedgerWriter(
        store, str(tmp_path / "spool"), flush_interval_s=0.02, memory_cap=100, batch_size=40
    )
    await writer.start()
    store.down = True
    for i in range(1000):  # far more than the memory queue holds
        writer.record(rec(i))
    assert writer.pending == -1  # the file is the queue now
    assert not await writer.flush()
    store.down = False
    assert await writer.flush()
    for i in range(1000, 1010):  # back to the memory queue
        writer.record(rec(i))
    assert writer.pending == 10
    assert await writer.flush()
    assert await store.count() == 1010
    await writer.stop()
