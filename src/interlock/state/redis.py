"""Shared state in Redis, so every replica sees the same breakers and degradation level.

Each call is bounded by ``redis_timeout_s``; on any failure the backend marks itself
unhealthy, logs once, and answers ``None``/no-op so the caller keeps its local view.
A frozen Redis (SIGSTOP) therefore costs each request at most one timeout, and the
background sync — not the request path — is where Redis is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from redis.asyncio import Redis

from interlock.state.base import BreakerSnapshot

log = logging.getLogger("interlock.state")
T = TypeVar("T")


class RedisState:
    def __init__(self, url: str, *, timeout_s: float = 0.05, prefix: str = "interlock:") -> None:
        self._url = url
        self._timeout = timeout_s
        self._prefix = prefix
        self._redis: Redis | None = None
        self.healthy = False
        self._connect()

    @property
    def client(self) -> Redis:
        """The connection pool (created on construction; connects lazily)."""
        assert self._redis is not None
        return self._redis

    async def start(self) -> None:
        await self._call(self._redis.ping())  # type: ignore[union-attr]

    def _connect(self) -> None:
        self._redis = Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            health_check_interval=0,
            retry_on_timeout=False,
            decode_responses=True,
        )

    async def close(self) -> None:
        if self._redis is not None:
            # Closing a dead connection: nothing to save, nothing to report.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout * 4):
                    await self._redis.aclose()
            self._redis = None

    async def _call(self, aw: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(self._timeout):
                result = await aw
        except Exception as exc:
            if self.healthy:
                log.warning("redis unavailable, using local state: %s", type(exc).__name__)
            self.healthy = False
            return None
        if not self.healthy:
            log.info("redis reachable again")
        self.healthy = True
        return result

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
