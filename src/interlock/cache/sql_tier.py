"""L3: the SQL database (SQLite or PostgreSQL), for answers worth keeping across restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import cache_entries


class SqlTier:
    name = "l3"

    def __init__(self, engine: AsyncEngine, timeout_s: float) -> None:
        self._engine = engine
        self._timeout = timeout_s
        self._dialect = engine.dialect.name

    async def _bounded(self, aw: Any) -> Any:
        async with asyncio.timeout(self._timeout):
            return await aw

    async def get(self, key: str) -> bytes | None:
        async def q() -> Any:
            async with self._engine.connect() as conn:
                return (
                    await conn.execute(
                        select(cache_entries.c.value).where(
                            cache_entries.c.key == key, cache_entries.c.drop_at > time.time()
                        )
                    )
                ).scalar_one_or_none()

        value = await self._bounded(q())
        return value.encode() if value is not None else None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ins = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(cache_entries)
        stmt = ins.values(
            key=key, value=value.decode(), drop_at=time.time() + ttl_s
        ).on_conflict_do_update(
            index_elements=["key"],
            set_={"value": ins.excluded.value, "drop_at": ins.excluded.drop_at},
        )

        async def q() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(stmt)

        await self._bounded(q())

    async def delete(self, key: str) -> None:
        async def q() -> None:
            async with self._engine.begin() as conn:
                await conn.execute(delete(cache_entries).where(cache_entries.c.key == key))

        await self._bounded(q())

    async def purge_expired(self) -> int:
        async with self._engine.begin() as conn:
            res = await conn.execute(
                delete(cache_entries).where(cache_entries.c.drop_at <= time.time())
            )
        return int(res.rowcount or 0)
