"""The Redis rate limiter against the real server: atomic across processes."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from interlock.state.ratelimit_local import Limit, RateLimitBackendError, admitted
from interlock.state.ratelimit_redis import RedisRateLimiter
from tests.support.services import REDIS_URL, delete_redis_keys, require

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def _require_redis() -> None:
    require("Redis", "127.0.0.1", 6379)


@pytest.fixture
def prefix() -> Iterator[str]:
    _require_redis()
    p = f"test:rl:{secrets.token_hex(4)}:"
    yield p
    delete_redis_keys(p)


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[Redis]:
    r = Redis.from_url(REDIS_URL)
    try:
        yield r
    finally:
        await r.aclose()


@pytest.fixture
def limiter(client: Redis, prefix: str) -> RedisRateLimiter:
    return RedisRateLimiter(client, prefix, timeout_s=2.0)


async def test_burst_then_denied_with_retry_after(limiter: RedisRateLimiter, client: Redis) -> None:
    lim = Limit("k", rate=3, period_s=60.0)
    got = [(await limiter.acquire([(lim, 1)]))[0] for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert got[3].retry_after_s == pytest.approx(20.0, abs=0.5)
    assert got[2].reset_s == pytest.approx(60.0, abs=0.5)
    # The TAT expires when the bucket would be full again: idle keys vanish.
    ttl_ms = await client.pttl(limiter.tat_key("k"))
    assert 59_000 < ttl_ms <= 60_001


async def test_admitted_when_retry_after_has_elapsed(limiter: RedisRateLimiter) -> None:
    lim = Limit("k", rate=10, period_s=1.0, burst=1)
    assert admitted(await limiter.acquire([(lim, 1)]))
    d = (await limiter.acquire([(lim, 1)]))[0]
    assert not d.allowed and 0 < d.retry_after_s <= 0.1
    await asyncio.sleep(d.retry_after_s)
    assert admitted(await limiter.acquire([(lim, 1)]))


async def test_waits_up_to_max_wait(limiter: RedisRateLimiter) -> None:
    lim = Limit("k", rate=5, period_s=1.0, burst=1)  # one every 200 ms
    assert admitted(await limiter.acquire([(lim, 1)]))
    start = time.monotonic()
    assert not admitted(await limiter.acquire([(lim, 1)], max_wait_s=0.05))
    assert time.monotonic() - start < 0.05
    assert admitted(await limiter.acquire([(lim, 1)], max_wait_s=1.0))
    assert 0.1 < time.monotonic() - start < 0.5


async def test_all_or_nothing_across_keys(limiter: RedisRateLimiter, client: Redis) -> None:
    rpm, tpm = Limit("rpm:k", rate=2), Limit("tpm:k", rate=100)
    assert admitted(await limiter.acquire([(rpm, 1), (tpm, 60)]))
    before = await client.mget(limiter.tat_key("rpm:k"), limiter.tat_key("tpm:k"))
    denied = await limiter.acquire([(rpm, 1), (tpm, 60)])
    assert not admitted(denied)
    assert denied[0].allowed and denied[0].remaining == 1
    assert not denied[1].allowed and denied[1].retry_after_s == pytest.approx(12.0, abs=0.2)
    assert await client.mget(limiter.tat_key("rpm:k"), limiter.tat_key("tpm:k")) == before
    assert admitted(await limiter.acquire([(rpm, 1), (tpm, 40)]))
    assert not admitted(await limiter.acquire([(rpm, 1)]))


async def test_costs_too_large_and_adjust(limiter: RedisRateLimiter, client: Redis) -> None:
    tpm = Limit("tpm", rate=1000)  # 60 ms per token
    d = (await limiter.acquire([(tpm, 600)]))[0]
    assert d.allowed and d.remaining == 400
    big = (await limiter.acquire([(tpm, 1001)], max_wait_s=5))[0]
    assert big.too_large and math.isinf(big.retry_after_s)
    await limiter.adjust(tpm, 300)
    assert 100 <= (await limiter.acquire([(tpm, 0)]))[0].remaining <= 101
    await limiter.adjust(tpm, -500)
    assert 600 <= (await limiter.acquire([(tpm, 0)]))[0].remaining <= 601
    await limiter.adjust(tpm, -5000)
    assert await client.exists(limiter.tat_key("tpm")) == 0  # full again: no state
    await limiter.adjust(tpm, 1500)  # debt beyond the burst
    peek = (await limiter.acquire([(tpm, 0)]))[0]
    assert not peek.allowed and peek.retry_after_s == pytest.approx(30.0, abs=0.5)


async def test_bad_checks_consume_nothing(limiter: RedisRateLimiter, client: Redis) -> None:
    lim = Limit("k", rate=10)
    with pytest.raises(ValueError):
        await limiter.acquire([(lim, 1), (lim, 1)])
    with pytest.raises(ValueError):
        await limiter.acquire([(Limit("other", rate=10), 1), (lim, -1)])
    assert await client.exists(limiter.tat_key("k"), limiter.tat_key("other")) == 0
    assert await limiter.acquire([]) == []


async def test_priorities(limiter: RedisRateLimiter) -> None:
    lim = Limit("team", rate=10)
    lows = [admitted(await limiter.acquire([(lim, 1)], priority=0)) for _ in range(9)]
    assert lows == [True] * 8 + [False]
    assert admitted(await limiter.acquire([(lim, 1)], priority=9))
    assert admitted(await limiter.acquire([(lim, 1)], priority=9))
    assert not admitted(await limiter.acquire([(lim, 1)], priority=9))


async def test_leases_and_expiry(limiter: RedisRateLimiter, client: Redis) -> None:
    a = await limiter.lease("c", 2, ttl_s=30)
    b = await limiter.lease("c", 2, ttl_s=0.2)
    assert a and b
    assert await limiter.lease("c", 2, ttl_s=30) is None
    await limiter.unlease("c", a)
    c = await limiter.lease("c", 2, ttl_s=30)
    assert c is not None and await limiter.lease("c", 2, ttl_s=30) is None
    await asyncio.sleep(0.25)  # b's holder "crashed": its slot comes back
    assert not await limiter.renew("c", b, ttl_s=30)
    assert await limiter.renew("c", c, ttl_s=60)
    assert 59_000 < await client.pttl(limiter.lease_key("c")) <= 60_001
    assert await limiter.lease("c", 2, ttl_s=30) is not None
    assert await limiter.lease("c", 2, ttl_s=30) is None


async def test_redis_down_fails_fast(free_port: int) -> None:
    r = Redis(host="127.0.0.1", port=free_port)
    limiter = RedisRateLimiter(r, "x:", timeout_s=0.2)
    try:
        for call in (
            limiter.acquire([(Limit("k", 1), 1)], max_wait_s=5),
            limiter.adjust(Limit("k", 1), 1),
            limiter.lease("c", 1, 1.0),
            limiter.unlease("c", "id"),
        ):
            start = time.monotonic()
            with pytest.raises(RateLimitBackendError):
                await call
            assert time.monotonic() - start < 0.5
    finally:
        await r.aclose()


async def test_frozen_redis_times_out() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # read the command, never answer
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = Redis(host="127.0.0.1", port=port)
    try:
        start = time.monotonic()
        with pytest.raises(RateLimitBackendError):
            await RedisRateLimiter(r, "x:", timeout_s=0.1).acquire([(Limit("k", 1), 1)])
        assert time.monotonic() - start < 0.5
    finally:
        await r.aclose()
        server.close()
        await server.wait_closed()


# --- four processes, one Redis ---------------------------------------------------------

WORKER = """
import asyncio, json, random, sys
from redis.asyncio import Redis
from interlock.state.ratelimit_local import Limit, admitted
from interlock.state.ratelimit_redis import RedisRateLimiter

mode, url, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def fire(calls):  # ten in flight at a time: contention without 100 connections each
    res = [None] * len(calls)
    async def lane(i):
        for j in range(i, len(calls), 10):
            res[j] = await calls[j]()
    await asyncio.gather(*(lane(i) for i in range(10)))
    return res

async def main():
    r = Redis.from_url(url)
    rl = RedisRateLimiter(r, prefix, 5.0)
    await r.ping()
    # Start together, as replicas under one burst would: the last to arrive says go.
    if await r.incr(prefix + "ready") == n:
        await r.rpush(prefix + "go", *["go"] * n)
    await r.blpop([prefix + "go"], timeout=30)
    out = {}
    if mode == "rpm":
        lim = Limit("shared", rate=50, period_s=60.0, burst=50)
        res = await fire([lambda: rl.acquire([(lim, 1)])] * 100)
        out["admitted"] = sum(admitted(d) for d in res)
    elif mode == "tpm":
        rpm, tpm = Limit("rpm", rate=40, period_s=60.0), Limit("tpm", rate=1000, period_s=60.0)
        rng = random.Random()
        costs = [rng.randint(1, 60) for _ in range(100)]
        res = await fire([lambda c=c: rl.acquire([(rpm, 1), (tpm, c)]) for c in costs])
        out["admitted"] = sum(admitted(d) for d in res)
        out["tokens"] = sum(c for c, d in zip(costs, res) if admitted(d))
    else:
        peak, held = 0, 0
        async def holder():
            nonlocal peak, held
            for _ in range(25):
                lease = await rl.lease("pool", 3, 10.0)
                if lease is None:
                    await asyncio.sleep(0.001)
                    continue
                peak = max(peak, await r.incr(prefix + "inside"))
                held += 1
                await asyncio.sleep(0.002)
                await r.decr(prefix + "inside")
                await rl.unlease("pool", lease)
        await asyncio.gather(*(holder() for _ in range(4)))
        out = {"peak": peak, "held": held}
    await r.aclose()
    print(json.dumps(out))

asyncio.run(main())
"""


def run_workers(mode: str, prefix: str, n: int = 4) -> tuple[list[dict[str, int]], float]:
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, mode, REDIS_URL, prefix, str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return results, time.monotonic() - start


def test_rpm_admitted_never_exceeds_the_limit_across_four_processes(prefix: str) -> None:
    results, elapsed = run_workers("rpm", prefix)
    total = sum(r["admitted"] for r in results)
    interval = 60.0 / 50
    assert 50 <= total <= 50 + math.floor(elapsed / interval)


def test_tpm_and_rpm_together_across_four_processes(prefix: str) -> None:
    results, elapsed = run_workers("tpm", prefix)
    requests = sum(r["admitted"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    assert 1 <= requests <= 40 + math.floor(elapsed / 1.5)
    assert tokens <= 1000 + math.floor(elapsed / 0.06)
    # The token bucket (not the request one) was the binding limit most of the time.
    assert tokens >= 1000 - 60 or requests >= 40


def test_leases_never_exceed_max_concurrency_across_four_processes(prefix: str) -> None:
    results, _ = run_workers("lease", prefix)
    assert max(r["peak"] for r in results) <= 3
    assert sum(r["held"] for r in results) > 0
    with redis.Redis.from_url(REDIS_URL) as r:
        assert r.zcard(prefix + "cc:pool") == 0  # every lease was given back
