"""The application cache's per-tenant byte quota, on both backends.

The Redis backend is exercised as two replicas would use it (two clients, one prefix),
against the real server: the quota holds across them, sizes replace on overwrite,
expired and deleted entries free their bytes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from interlock.cache.quota import (
    ENTRY_OVERHEAD,
    LocalQuota,
    QuotaUnavailable,
    RedisQuota,
    StorageQuota,
    entry_size,
)
from interlock.state.redis_call import RedisCalls
from tests.support.services import REDIS_URL, delete_redis_keys, require

LIMIT = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entry_size_counts_name_value_and_overhead() -> None:
    assert entry_size("ns|k", b"abc") == 3 + 4 + ENTRY_OVERHEAD


async def test_local_quota_frees_on_expiry_and_delete() -> None:
    clock = Clock()
    q = LocalQuota(LIMIT, clock)
    assert (await q.charge("t", "a", 6000, 10)).ok
    assert (await q.charge("t", "a", 6000, 10)).used == 6000  # an overwrite replaces
    refused = await q.charge("t", "b", 6000, 10)
    assert not refused.ok and refused.retry_after_s == pytest.approx(10)
    assert (await q.charge("u", "b", 6000, 10)).ok  # another tenant
    clock.now += 10.5
    assert (await q.charge("t", "b", 6000, 10)).ok  # "a" expired
    await q.release("t", "b")
    assert (await q.charge("t", "c", 9000, 10)).used == 9000


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[StorageQuota, StorageQuota]]:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:quota:{secrets.token_hex(4)}:"
    a, b = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        yield (RedisQuota(a, prefix, LIMIT, RedisCalls(2.0)),
               RedisQuota(b, prefix, LIMIT, RedisCalls(2.0)))  # fmt: skip
    finally:
        await a.aclose()
        await b.aclose()
        delete_redis_keys(prefix)


@pytest.mark.redis
async def test_redis_quota_holds_across_replicas(
    replicas: tuple[StorageQuota, StorageQuota],
) -> None:
    one, two = replicas
    # 40 concurrent writes of 1,000 bytes from two replicas: exactly 10 fit.
    results = await asyncio.gather(
        *((one if i % 2 else two).charge("team:x", f"e{i}", 1000, 60) for i in range(40))
    )
    assert sum(r.ok for r in results) == 10
    refused = [r for r in results if not r.ok]
    assert all(r.used == LIMIT and r.retry_after_s is not None for r in refused)
    assert 59 < refused[0].retry_after_s <= 60  # type: ignore[operator]
    # Overwrites replace; a delete on one replica frees room on the other.
    kept = [f"e{i}" for i, r in enumerate(results) if r.ok]
    assert (await one.charge("team:x", kept[0], 1000, 60)).ok
    await two.release("team:x", kept[0])
    assert (await one.charge("team:x", "new", 1000, 60)).used == LIMIT
    assert (await two.charge("team:y", "e0", 1000, 60)).used == 1000  # its own tenant


@pytest.mark.redis
async def test_redis_quota_forgets_expired_entries(
    replicas: tuple[StorageQuota, StorageQuota],
) -> None:
    one, two = replicas
    assert (await one.charge("t", "short", 9000, 0.2)).ok
    assert not (await two.charge("t", "other", 9000, 60)).ok
    await asyncio.sleep(0.3)
    assert (await two.charge("t", "other", 9000, 60)).used == 9000


async def test_an_unreachable_redis_refuses_the_write() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    q = RedisQuota(client, "test:quota:down:", LIMIT, RedisCalls(0.5))
    try:
        with pytest.raises(QuotaUnavailable):
            await q.charge("t", "e", 10, 60)
    finally:
        await client.aclose()
