"""The job-queue backends under test: SQLite, PostgreSQL and Redis, one store per test.

``store`` hands out :class:`QueueStore`: ``await store.open()`` builds another queue
object on the *same* store with its own engine or client (what another replica, or the
process after a restart, would have), sharing the test's fake clock.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.jobs.queue import JobQueue, QueueLimits, RedisJobQueue, SqlJobQueue
from interlock.settings import StorageSettings
from interlock.storage.engine import create_engine, run_migrations
from tests.support.services import PG_URL, REDIS_URL, require

START = 1_800_000_000.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class QueueStore:
    def __init__(self, kind: str, clock: FakeClock) -> None:
        self.kind = kind
        self.clock = clock
        self.settings: StorageSettings | None = None
        self.prefix = f"test:jobs:{secrets.token_hex(4)}:"
        self._engines: list[AsyncEngine] = []
        self._clients: list[Redis] = []

    async def open(self, limits: QueueLimits | None = None, **kwargs: Any) -> JobQueue:
        if self.kind == "redis":
            client = Redis.from_url(REDIS_URL)
            self._clients.append(client)
            return RedisJobQueue(client, self.prefix, limits=limits, clock=self.clock, **kwargs)
        assert self.settings is not None
        engine = create_engine(self.settings)
        self._engines.append(engine)
        return SqlJobQueue(engine, limits=limits, clock=self.clock, **kwargs)

    async def close(self) -> None:
        for engine in self._engines:
            await engine.dispose()
        for client in self._clients:
            await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[QueueStore]:
    kind: str = request.param
    s = QueueStore(kind, clock)
    if kind == "redis":
        require("Redis", "127.0.0.1", 6379)
        try:
            yield s
        finally:
            await s.close()
            with redis.Redis.from_url(REDIS_URL) as r:
                keys = list(r.scan_iter(match=s.prefix + "*", count=1000))
                if keys:
                    r.delete(*keys)
        return
    if kind == "sqlite":
        s.settings = StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/jobs.db")
    else:
        require("PostgreSQL", "127.0.0.1", 5432)
        s.settings = StorageSettings(url=PG_URL, db_schema="t_" + secrets.token_hex(6))
    engine = create_engine(s.settings)
    try:
        await run_migrations(engine, s.settings.db_schema)
        yield s
    finally:
        await s.close()
        if s.settings.db_schema:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{s.settings.db_schema}" CASCADE'))
        await engine.dispose()
