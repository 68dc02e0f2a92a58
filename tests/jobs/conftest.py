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
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.jobs.queue import JobQueue, QueueLimits, RedisJobQueue, SqlJobQueue
from interlock.settings import StorageSettings
from interlock.storage.engine import create_engine
from tests.support.databases import migrated
from tests.support.services import REDIS_URL, delete_redis_keys, require

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
            delete_redis_keys(s.prefix)
        return
    async with migrated(kind, tmp_path) as db:
        s.settings = db.settings
        try:
            yield s
        finally:
            await s.close()
