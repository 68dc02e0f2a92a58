"""L2: Redis (single server, Sentinel or Cluster: plain GET/SET with expiry, one key each)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis, RedisCluster


class RedisTier:
    name = "l2"

    def __init__(self, redis: Redis | RedisCluster, prefix: str, timeout_s: float) -> None:
        self._r = redis
        self._prefix = prefix + "cache:"
        self._timeout = timeout_s

    async def _bounded(self, aw: Any) -> Any:
        async with asyncio.timeout(self._timeout):
            return await aw

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
