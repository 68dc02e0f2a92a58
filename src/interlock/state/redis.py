"""Shared state in Redis, so every replica sees the same breakers and degradation level.

Every call goes through one :class:`~interlock.state.redis_call.RedisCalls` (``calls``),
shared with the budget reservations and the rate limiter on the same client: bounded by
``redis_timeout_s`` of Redis's own time (event-loop lag is not charged to Redis) and
``redis_timeout_max_s`` of wall-clock time. On a failure this backend answers
``None``/no-op so the caller keeps its local view; once Redis is known to be down, calls
fail at once until a probe succeeds. The background sync — not the request path — is
where Redis is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

from redis.asyncio import Redis

from interlock.state.base import BreakerSnapshot
from interlock.state.redis_call import RedisCalls, RedisUnavailable
from interlock.state.redis_connect import connect

T = TypeVar("T")


class RedisState:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.25,
        max_s: float = 1.0,
        prefix: str = "interlock:",
    ) -> None:
        self._url = url
        self._prefix = prefix
        self.calls = RedisCalls(timeout_s, max_s, name="redis (shared state)")
        self._redis: Redis | None = None
        self._connect()

    @property
    def healthy(self) -> bool:
        return self.calls.healthy

    @property
    def client(self) -> Redis:
        """The connection pool (created on construction; connects lazily)."""
        assert self._redis is not None
        return self._redis

    async def start(self) -> None:
        await self._call(self._redis.ping())  # type: ignore[union-attr]

    def _connect(self) -> None:
        client = connect(self._url, timeout_s=self.calls.max_s)
        if not isinstance(client, Redis):
            raise ValueError("state.redis_url: Redis Cluster is not supported for shared state")
        self._redis = client

    async def close(self) -> None:
        if self._redis is not None:
            # Closing a dead connection: nothing to save, nothing to report.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.calls.max_s):
                    await self._redis.aclose()
            self._redis = None

    async def _call(self, aw: Awaitable[T]) -> T | None:
        try:
            return await self.calls(aw)
        except RedisUnavailable:
            return None  # the caller keeps its local view; RedisCalls logged the outage

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def publish_breaker(self, deployment: str, snap: BreakerSnapshot) -> None:
        assert self._redis is not None
        mapping: dict[str | bytes, str] = {
            "state": snap.state,
            "open_until": repr(snap.open_until),
            "trips": str(snap.trips),
            "updated_at": repr(snap.updated_at),
        }
        await self._call(self._redis.hset(self._key("breaker", deployment), mapping=mapping))  # type: ignore[misc,arg-type]

    async def fetch_breakers(self, deployments: list[str]) -> dict[str, BreakerSnapshot] | None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for d in deployments:
            pipe.hgetall(self._key("breaker", d))
        rows = await self._call(pipe.execute())
        if rows is None:
            return None
        out: dict[str, BreakerSnapshot] = {}
        for d, row in zip(deployments, rows, strict=True):
            if row:
                out[d] = BreakerSnapshot(
                    row["state"],
                    float(row["open_until"]),
                    int(row["trips"]),
                    float(row["updated_at"]),
                )
        return out

    async def set_forced_level(self, level: str | None) -> bool:
        assert self._redis is not None
        key = self._key("degradation", "forced")
        aw = self._redis.delete(key) if level is None else self._redis.set(key, level)
        return await self._call(aw) is not None

    async def report_level(self, replica: str, level: int, ttl_s: float) -> None:
        assert self._redis is not None
        expires = time.time() + ttl_s
        await self._call(
            self._redis.hset(self._key("degradation", "levels"), replica, f"{level}|{expires!r}")  # type: ignore[misc]
        )

    async def cluster_levels(self) -> tuple[str | None, int] | None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._key("degradation", "forced"))
        pipe.hgetall(self._key("degradation", "levels"))
        rows = await self._call(pipe.execute())
        if rows is None:
            return None
        forced, levels = rows
        now = time.time()
        worst = 0
        stale = []
        for replica, value in (levels or {}).items():
            lvl, _, exp = value.partition("|")
            if float(exp) > now:
                worst = max(worst, int(lvl))
            else:
                stale.append(replica)
        if stale:
            await self._call(self._redis.hdel(self._key("degradation", "levels"), *stale))  # type: ignore[misc]
        return forced, worst
