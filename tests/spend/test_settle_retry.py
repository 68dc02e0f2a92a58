"""Budget state while Redis stalls: settlements are retried until they land; budgeted keys
fail closed per budget (or within a bounded per-replica allowance), keys without a budget
are never refused for it.

Each test starts its own redis-server on a free port and freezes it with SIGSTOP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from interlock.errors import ServiceUnavailable
from interlock.settings import SpendSettings, StorageSettings
from interlock.sim import SimControl
from interlock.spend.enforcer import BudgetEnforcer
from interlock.state.reservations import RedisReservations
from interlock.storage.budgets import BudgetStore
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.own_redis import OwnRedis

pytestmark = pytest.mark.redis


@pytest.fixture
async def env(
    own_redis: OwnRedis, tmp_path: Path
) -> AsyncIterator[tuple[OwnRedis, Redis, LedgerStore, BudgetStore]]:
    url = own_redis.url
    engine = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))
    await run_migrations(engine)
    client = Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)
    yield own_redis, client, LedgerStore(engine), BudgetStore(engine)
    own_redis.thaw()
    await client.aclose()
    await engine.dispose()


def enforcer(client: Redis, ledger: LedgerStore, budgets: BudgetStore, **spend: object) -> BudgetEnforcer:  # fmt: skip
    cfg = SpendSettings(
        budgets=({"scope": "global", "window": "daily", "limit_usd": 1.0},),  # type: ignore[arg-type]
        **spend,  # type: ignore[arg-type]
    )
    return BudgetEnforcer(cfg, RedisReservations(client, "t:", timeout_s=0.2), ledger, budgets,
                          hold_s=0.5)  # fmt: skip


async def counter(client: Redis) -> tuple[Decimal, Decimal]:
    keys = [
        k for k in await client.keys("t:*") if not k.endswith((b":r", b":h", b":a", b":x", b":c"))
    ]
    assert len(keys) == 1
    settled, held = await client.get(keys[0]), await client.get(keys[0] + b":r")
    return Decimal(int(settled)) / 10**9, Decimal(int(held or 0)) / 10**9


async def until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_settle_during_a_stall_lands_when_redis_returns(env) -> None:  # type: ignore[no-untyped-def]
    redis, client, ledger, budgets = env
    enf = enforcer(client, ledger, budgets)
    b = enf.applicable("k", None, None, ())
    res = await enf.reserve(b, Decimal("0.10"))
    late = await enf.reserve(b, Decimal("0.30"))
    assert await counter(client) == (0, Decimal("0.40"))
    redis.freeze()
    t = time.monotonic()
    await enf.settle(res, Decimal("0.04"))  # fails: queued, not dropped
    assert len(enf.settles) == 1
    with pytest.raises(ServiceUnavailable) as refused:  # fail closed, promptly
        await enf.reserve(b, Decimal("0.01"))
    assert refused.value.code == "budget_state_unavailable" and refused.value.retry_after
    await enf.settle(late, Decimal("0.25"))  # queued behind, without waiting on Redis
    assert len(enf.settles) == 2 and time.monotonic() - t < 2.0
    await asyncio.sleep(1.0)  # both holds expire meanwhile (hold_s 0.5)
    redis.thaw()
    await until(lambda: _empty(enf))
    # Charged at their reserved amounts on expiry, then corrected by the late settles.
    assert await counter(client) == (Decimal("0.29"), 0)
    await enf.close()


async def _empty(enf: BudgetEnforcer) -> bool:
    return len(enf.settles) == 0


async def test_allowance_admits_a_bounded_amount_blind_and_charges_it_back(env) -> None:  # type: ignore[no-untyped-def]
    redis, client, ledger, budgets = env
    enf = enforcer(client, ledger, budgets, state_unavailable_allowance_usd=0.25)
    b = enf.applicable("k", None, None, ())
    first = await enf.reserve(b, Decimal("0.5"))  # this replica has seen the counter
    await enf.settle(first, Decimal("0.5"))
    redis.freeze()
    blind = [await enf.reserve(b, Decimal("0.1")), await enf.reserve(b, Decimal("0.1"))]
    assert all(r is not None and r.local for r in blind)
    with pytest.raises(ServiceUnavailable):  # 0.1 more would pass the allowance of 0.25
        await enf.reserve(b, Decimal("0.1"))
    for r in blind:
        await enf.settle(r, Decimal("0.03"))
    redis.thaw()
    await until(lambda: _empty(enf))
    assert await counter(client) == (Decimal("0.56"), 0)  # charged back, once each
    # Redis is back: the allowance is free again and admissions are checked as usual.
    assert (await enf.reserve(b, Decimal("0.1"))) is not None
    await enf.close()


async def test_a_replica_that_never_saw_the_counter_refuses(env) -> None:  # type: ignore[no-untyped-def]
    redis, client, ledger, budgets = env
    enf = enforcer(client, ledger, budgets, state_unavailable_allowance_usd=10)
    redis.freeze()
    with pytest.raises(ServiceUnavailable):
        await enf.reserve(enf.applicable("k", None, None, ()), Decimal("0.01"))
    await enf.close()


@pytest.mark.slow
def test_keys_without_a_budget_are_served_through_a_redis_freeze(
    own_redis: OwnRedis, sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    url = own_redis.url
    cfg = sim_config(sim_url, tmp_path / "state", state={"backend": "redis", "redis_url": url,
                                                         "key_prefix": "f:"})  # fmt: skip
    gw = GatewayProcess(cfg, tmp_path).start(timeout=60)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            free = c.post("/admin/keys", headers=admin, json={"user": "free"}).json()["key"]
            capped = c.post("/admin/keys", headers=admin,
                            json={"user": "capped", "budgets": [{"limit_usd": 5, "window": "daily"}]}).json()["key"]  # fmt: skip
            body = {
                "model": "chat",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            }

            def send(key: str) -> tuple[int, float, httpx.Response]:
                t = time.monotonic()
                r = c.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                )
                return r.status_code, time.monotonic() - t, r

            for key in (free, capped):  # both verified and seen once while Redis is up
                assert send(key)[0] == 200
            own_redis.freeze()
            try:
                results = [send(free) for _ in range(30)]
                refused = send(capped)
            finally:
                own_redis.thaw()
        assert [s for s, _, _ in results] == [200] * 30
        assert max(d for _, d, _ in results) < 2.0, sorted(d for _, d, _ in results)[-3:]
        status, took, r = refused
        assert status == 503 and r.json()["error"]["code"] == "budget_state_unavailable"
        assert r.headers.get("retry-after") and took < 2.0
    except BaseException:
        print(gw.output()[-5000:])
        raise
    finally:
        gw.stop()
