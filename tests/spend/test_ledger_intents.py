"""Intents in the spool: a request in flight when its process dies is recorded and charged.

A real process spools intents (and reserves holds in a real Redis), finishes some
requests, and is SIGKILLed; a survivor replays its spool: finished requests keep their
records and settlements, every open intent becomes a ``replica_lost`` row at its worst
case and its holds are charged at that amount, exactly once however often it is replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.settings import StorageSettings
from interlock.sim import SimControl
from interlock.spend import ledger as ledger_mod
from interlock.spend.ledger import LedgerRecord, LedgerWriter, lost_record
from interlock.spend.settlements import Settle
from interlock.state.reservations import RedisReservations
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore
from interlock.storage.tables import ledger
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.services import REDIS_URL, delete_redis_keys, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/l.db"))
    await run_migrations(eng)
    yield eng
    await eng.dispose()


async def rows_by_id(engine: AsyncEngine) -> dict[str, dict]:
    async with engine.connect() as conn:
        got = (await conn.execute(select(ledger))).fetchall()
    return {r.request_id: dict(r._mapping) for r in got}


def run_and_kill(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.stdout


@pytest.mark.redis
async def test_killed_process_in_flight_requests_are_recorded_and_charged(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:intent:{secrets.token_hex(4)}:"
    spool = tmp_path / "spool"
    # The dying process: 30 requests reserve $0.10 each on one counter; 10 finish at
    # $0.04 (record spooled, then settled), 5 finish but die before settling, 15 are
    # still at the provider when the process is killed.
    out = run_and_kill(f"""
        import asyncio, os, signal
        from decimal import Decimal
        from redis.asyncio import Redis
        from interlock.settings import StorageSettings
        from interlock.spend.ledger import LedgerRecord, LedgerWriter, lost_record
        from interlock.spend.settlements import Settle
        from interlock.state.reservations import Hold, RedisReservations
        from interlock.storage.engine import create_engine
        from interlock.storage.ledger import LedgerStore

        async def main():
            eng = create_engine(StorageSettings(url="sqlite+aiosqlite:///{tmp_path}/l.db"))
            r = RedisReservations(Redis.from_url({REDIS_URL!r}), {prefix!r}, 5.0)
            await r.init("k", 0, 3600)
            w = LedgerWriter(LedgerStore(eng), {str(spool)!r}, flush_interval_s=0.05,
                             checkpoint_every_s=0)
            await w.start()
            for i in range(30):
                rid = f"res{{i}}"
                assert (await r.reserve([Hold("k", 10_000_000_000, 3600)], 100_000_000, rid, 600)).ok
                rec = LedgerRecord(request_id=f"req-{{i}}", endpoint="chat", status=200, outcome="ok",
                                   key_id="k1", model="m")
                w.intent(lost_record(rec, Decimal("0.1")), [Settle(rid, ("k",), 100_000_000)])
            for i in range(15):
                s = [Settle(f"res{{i}}", ("k",), 40_000_000)]
                w.record(LedgerRecord(request_id=f"req-{{i}}", endpoint="chat", status=200,
                                      outcome="ok", key_id="k1", model="m",
                                      cost_usd=Decimal("0.04")), s)
                if i < 10:
                    await r.settle(["k"], f"res{{i}}", 40_000_000)
                    w.landed(f"req-{{i}}")
            await asyncio.sleep(0.5)  # flushed and checkpointed: the intents pin it
            assert await w.flush()
            print("ready", w.open_intents, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    assert "ready 20" in out, out  # 5 unsettled records + 15 open intents
    client = Redis.from_url(REDIS_URL)
    try:
        res = RedisReservations(client, prefix, 5.0)

        async def apply(settles: list[Settle]) -> None:
            for s in settles:
                await res.settle(list(s.keys), s.rid, s.actual, s.mode)

        assert await res.read("k") == (400_000_000, 2_000_000_000)  # 10 settled, 20 held
        survivor = LedgerWriter(LedgerStore(engine), str(spool), replay_settle=apply)
        await survivor.start()
        assert await survivor.replay_orphans() == 1
        got = await rows_by_id(engine)
        assert len(got) == 30
        lost = [r for r in got.values() if r["outcome"] == "replica_lost"]
        assert sorted(r["request_id"] for r in lost) == sorted(f"req-{i}" for i in range(15, 30))
        assert all(r["cost_usd"] == Decimal("0.1") and r["usage_estimated"] for r in lost)
        assert all(r["reserved_usd"] == Decimal("0.1") for r in lost)
        # 15 finished at $0.04 (5 of them settled by the replay), 15 lost at $0.10.
        assert await res.read("k") == (15 * 40_000_000 + 15 * 100_000_000, 0)
        # A replay of the same spool again (a crash during the replay) adds nothing.
        await apply([Settle(f"res{i}", ("k",), 100_000_000) for i in range(15, 30)])
        await apply([Settle(f"res{i}", ("k",), 40_000_000) for i in range(15)])
        assert await res.read("k") == (15 * 40_000_000 + 15 * 100_000_000, 0)
        await survivor.stop()
    finally:
        delete_redis_keys(prefix)
        await client.aclose()


async def test_open_intent_survives_rotation_and_checkpoints(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of records after an intent: the checkpoint never passes it, rotation
    carries it over, and a replay of the files finds it open."""
    monkeypatch.setattr(ledger_mod, "_ROTATE_BYTES", 64 * 1024)
    spool = tmp_path / "spool"
    w = LedgerWriter(LedgerStore(engine), str(spool), flush_interval_s=3600, checkpoint_every_s=0)
    await w.start()
    early = LedgerRecord(request_id="early", endpoint="chat", status=200, outcome="ok")
    w.intent(lost_record(early, Decimal("0.5")), [Settle("h-early", ("k",), 500_000_000)])
    for i in range(2000):
        w.record(LedgerRecord(request_id=f"r{i}", endpoint="chat", status=200, outcome="ok"))
        if i % 100 == 0:
            assert await w.flush()
    assert await w.flush()
    files = sorted(spool.glob("*.jsonl"))
    assert len(files) == 1  # rotated (64 KiB), the old file gone
    assert files[0].stat().st_size < 64 * 1024
    assert w.open_intents == 1
    # The process "dies" now: its lock goes, its file is an orphan.
    w._spool.close()
    w._stopping = True
    applied: list[Settle] = []

    async def apply(settles: list[Settle]) -> None:
        applied.extend(settles)

    survivor = LedgerWriter(LedgerStore(engine), str(spool), replay_settle=apply)
    await survivor.start()
    assert await survivor.replay_orphans() == 1
    got = await rows_by_id(engine)
    assert len(got) == 2001
    assert got["early"]["outcome"] == "replica_lost" and got["early"]["cost_usd"] == Decimal("0.5")
    assert applied == [Settle("h-early", ("k",), 500_000_000)]
    await survivor.stop()
    if w._task is not None:
        w._task.cancel()


@pytest.mark.slow
def test_gateway_killed_mid_request_records_it_even_without_a_budget(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    """A real gateway SIGKILLed while an unbudgeted request is at the provider: the next
    process on the same state directory records it as replica_lost at its worst case."""
    cfg = sim_config(sim_url, tmp_path / "state")
    sim.set_config(tokens_per_s=10)  # 16 tokens: ~1.6 s at the provider
    gw = GatewayProcess(cfg, tmp_path / "a").start(timeout=60)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    key = httpx.post(f"{gw.url}/admin/keys", headers=admin, json={"user": "nobudget"}).json()["key"]

    def call() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{gw.url}/v1/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "slow"}]})  # fmt: skip

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while not any(r["path"] == "/v1/chat/completions" for r in sim.requests()):
        assert time.monotonic() < deadline, "the request never reached the provider"
        time.sleep(0.05)
    assert gw.proc is not None
    gw.proc.kill()  # SIGKILL, with the request at the provider
    gw.proc.wait(10)
    t.join(30)
    again = GatewayProcess(cfg, tmp_path / "b").start(timeout=60)  # replays the spool at start
    try:
        engine = create_engine(StorageSettings(url=cfg["storage"]["url"]))
        deadline = time.monotonic() + 20
        while True:
            got = asyncio.run(_lost_rows(engine))
            if got or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(got) == 1, got
        row = got[0]
        assert row["model"] == "chat" and row["status"] == 0 and row["usage_estimated"]
        assert row["cost_usd"] == row["reserved_usd"] > 0  # the worst case, budget or not
        # The provider did serve it: it bills when its answer is done (~1.6 s after the
        # call arrived), which may be after the restarted gateway replayed the spool.
        deadline = time.monotonic() + 10
        while sim.ledger()["totals"]["requests"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sim.ledger()["totals"]["requests"] == 1
    finally:
        again.stop()


async def _lost_rows(engine: AsyncEngine) -> list[dict]:
    try:
        async with engine.connect() as conn:
            got = (
                await conn.execute(select(ledger).where(ledger.c.outcome == "replica_lost"))
            ).fetchall()
        return [dict(r._mapping) for r in got]
    finally:
        await engine.dispose()
