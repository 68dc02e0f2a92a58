"""L2: Redis (single server, Sentinel or Cluster: plain GET/SET with expiry, one key each)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster

from interlock.state.redis_call import RedisCalls


class RedisTier:
    name = "l2"

    def __init__(self, redis: Redis | RedisCluster, prefix: str, timeout_s: float) -> None:
        self._r = redis
        self._prefix = prefix + "cache:"
        # Its own RedisCalls even on the shared client: a slow cache read is a miss, and
        # must not make the budgets think Redis is down. Loop lag is not charged to Redis.
        self._calls = RedisCalls(timeout_s, name="redis (cache tier)")

    @property
    def client(self) -> Redis | RedisCluster:
        """The connection (the app cache's quota keeps its counts beside the entries)."""
        return self._r

    async def _bounded(self, aw: Any) -> Any:
        return await self._calls(aw)  # RedisUnavailable: the tiered cache counts a miss

    async def get(self, key: str) -> bytes | None:
        value = await self._bounded(self._r.get(self._prefix + key))
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._bounded(
            self._r.set(self._prefix + key, value.decode(), px=max(1, int(ttl_s * 1000)))
        )

    async def delete(self, key: str) -> None:
        await self._bounded(self._r.delete(self._prefix + key))
