"""Cache keys, policy, tiers and replay — without a gateway."""

from __future__ import annotations

import asyncio
import secrets
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from interlock.cache.keys import cache_key
from interlock.cache.memory import MemoryTier
from interlock.cache.policy import decide
from interlock.cache.redis_tier import RedisTier
from interlock.cache.replay import StreamAssembler, replay_chunks
from interlock.cache.sql_tier import SqlTier
from interlock.cache.tiered import CachedAnswer, TieredCache
from interlock.settings import CacheSettings, RouteCacheSettings, StorageSettings
from interlock.storage.engine import create_engine, run_migrations
from interlock.types import Endpoint, Usage
from tests.support.services import require

BODY = {"model": "m", "temperature": 0, "messages": [{"role": "system", "content": "be terse"},
                                                     {"role": "user", "content": "2+2?"}]}  # fmt: skip


def test_key_covers_the_whole_request_and_the_tenant() -> None:
    k = cache_key("team:a", "chat", "chat", BODY)
    assert (
        cache_key("team:a", "chat", "chat", {**BODY, "stream": True, "user": "x"}) == k
    )  # delivery only
    assert cache_key("team:b", "chat", "chat", BODY) != k  # another tenant
    assert cache_key("team:a", "other", "chat", BODY) != k  # another model
    changed = [
        {**BODY, "messages": [BODY["messages"][1]]},  # the system prompt is part of it
        {**BODY, "temperature": 0.5},
        {**BODY, "max_tokens": 5},
        {**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]},
        {**BODY, "response_format": {"type": "json_object"}},
        {**BODY, "seed": 1},
        {**BODY, "n": 2},
    ]
    assert len({cache_key("team:a", "chat", "chat", b) for b in changed} | {k}) == len(changed) + 1


@pytest.mark.parametrize(
    ("body", "mode", "cc", "expect"),
    [
        (BODY, None, None, (True, True, None)),
        ({**BODY, "temperature": 0.7}, None, None, None),  # sampled: not cached by default
        ({k: v for k, v in BODY.items() if k != "temperature"}, None, None, None),
        (BODY, "bypass", None, None),
        (BODY, "refresh", None, (False, True, None)),
        (BODY, None, "no-cache", (False, True, None)),
        (BODY, None, "no-store", (True, False, None)),
        (BODY, None, "max-age=30", (True, True, 30.0)),
    ],
)
def test_policy(body: dict, mode: str | None, cc: str | None, expect: tuple | None) -> None:
    d = decide(CacheSettings(), None, Endpoint.CHAT, body, mode, cc)
    assert (None if d is None else (d.read, d.write, d.max_age_s)) == expect


def test_route_policy_overrides() -> None:
    any_ = RouteCacheSettings(cacheable="any", ttl_s=5)
    d = decide(CacheSettings(), any_, Endpoint.CHAT, {**BODY, "temperature": 1}, None, None)
    assert d is not None and d.ttl_s == 5
    assert (
        decide(CacheSettings(), RouteCacheSettings(enabled=False), Endpoint.CHAT, BODY, None, None)
        is None
    )
    assert (
        decide(CacheSettings(), None, Endpoint.EMBEDDINGS, {"input": "x"}, None, None) is not None
    )


async def test_memory_tier_lru_by_bytes_and_expiry() -> None:
    now = [0.0]
    t = MemoryTier(max_bytes=3000, clock=lambda: now[0])
    for i in range(5):
        await t.set(f"k{i}", b"x" * 1000, ttl_s=10)
    assert await t.get("k0") is None and await t.get("k4") is not None  # oldest evicted
    assert t.size_bytes <= 3000
    now[0] = 11
    assert await t.get("k4") is None


def answer(fresh_s: float = 60) -> CachedAnswer:
    import time

    return CachedAnswer(
        b'{"choices":[]}',
        Usage(3, 4),
        "d",
        "p",
        Decimal("0.001"),
        time.time(),
        time.time() + fresh_s,
    )


async def conformance(tier) -> None:  # type: ignore[no-untyped-def]
    key = "t|" + secrets.token_hex(6)
    assert await tier.get(key) is None
    raw = answer().encode()
    await tier.set(key, raw, 60)
    assert await tier.get(key) == raw
    await tier.delete(key)
    assert await tier.get(key) is None
    await tier.set(key, raw, 0.05)
    await asyncio.sleep(0.1)
    assert await tier.get(key) is None


async def test_memory_conformance() -> None:
    await conformance(MemoryTier(1 << 20))


async def test_sqlite_conformance(tmp_path: Path) -> None:
    eng = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/c.db"))
    await run_migrations(eng)
    await conformance(SqlTier(eng, 2.0))
    await eng.dispose()


@pytest.mark.postgres
async def test_postgres_conformance() -> None:
    from tests.support.services import PG_URL

    require("PostgreSQL", "127.0.0.1", 5432)
    schema = "c_" + secrets.token_hex(5)
    eng = create_engine(StorageSettings(url=PG_URL, db_schema=schema))
    await run_migrations(eng, schema)
    try:
        await conformance(SqlTier(eng, 2.0))
    finally:
        from sqlalchemy import text

        async with eng.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await eng.dispose()


@pytest.mark.redis
async def test_redis_conformance() -> None:
    require("Redis", "127.0.0.1", 6379)
    r = Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    try:
        await conformance(RedisTier(r, f"t{secrets.token_hex(3)}:", 0.5))
    finally:
        await r.aclose()


async def test_tiers_promote_and_a_dead_tier_is_a_miss() -> None:
    class Dead:
        name = "l2"

        async def get(self, key: str) -> bytes | None:
            raise ConnectionError

        async def set(self, key: str, value: bytes, ttl_s: float) -> None:
            raise ConnectionError

        async def delete(self, key: str) -> None:
            raise ConnectionError

    l1, l3 = MemoryTier(1 << 20), MemoryTier(1 << 20)
    l3.name = "l3"  # type: ignore[misc]
    cache = TieredCache([l1, Dead(), l3], max_stale_s=0)
    await l3.set("k", answer().encode(), 60)
    got = await cache.get("k")
    assert got is not None and got.tier == "l3"
    await cache.drain()
    assert (await cache.get("k")).tier == "l1"  # type: ignore[union-attr]
    cache.put("k2", answer())
    await cache.drain()
    assert await l1.get("k2") is not None and await l3.get("k2") is not None


async def test_stale_entries_only_when_allowed() -> None:
    cache = TieredCache([MemoryTier(1 << 20)], max_stale_s=3600)
    cache.put("k", answer(fresh_s=-1))
    await cache.drain()
    assert await cache.get("k") is None
    assert await cache.get("k", allow_stale=True) is not None


def test_replay_and_assemble_round_trip() -> None:
    completion = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "four"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "add", "arguments": '{"a":2}'}}]},
         "finish_reason": "tool_calls"}]}  # fmt: skip
    chunks = replay_chunks(orjson.dumps(completion), True, Usage(5, 6))
    assert chunks[-1].obj["usage"]["completion_tokens"] == 6
    asm = StreamAssembler()
    for c in chunks:
        asm.feed(c.obj)
    assert asm.complete()
    again = orjson.loads(asm.answer(Usage(5, 6)))
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in completion["choices"]]
