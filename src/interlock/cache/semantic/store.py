"""The shared vector store of the semantic cache (backend ``sql``): SQLite or PostgreSQL.

Vectors are written once by the replica that cached the answer and read by every
replica by tailing the table in ``id`` order, so each replica's in-process index holds
every replica's entries a sync interval later. (pgvector would search in the database;
it is not packaged for every PostgreSQL we run on, and an in-process index answers in
well under a millisecond, so the database only carries the vectors.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import semantic_entries as t


@dataclass(frozen=True, slots=True)
class StoredVector:
    id: int
    partition: str
    key: str
    text: str
    vector: np.ndarray  # type: ignore[type-arg]
    drop_at: float


class SemanticStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(
        self,
        partition: str,
        key: str,
        text: str,
        vector: np.ndarray,  # type: ignore[type-arg]
        drop_at: float,
    ) -> None:
        row = {
            "partition": partition,
            "cache_key": key,
            "text": text,
            "vector": np.asarray(vector, dtype="<f4").tobytes(),
            "drop_at": drop_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(t).values(row))

    async def since(self, last_id: int, limit: int = 5000) -> list[StoredVector]:
        """Live entries after ``last_id``, oldest first."""
        q = (
            select(t.c.id, t.c.partition, t.c.cache_key, t.c.text, t.c.vector, t.c.drop_at)
            .where(t.c.id > last_id, t.c.drop_at > time.time())
            .order_by(t.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).fetchall()
        return [
            StoredVector(
                r.id,
                r.partition,
                r.cache_key,
                r.text,
                np.frombuffer(r.vector, dtype="<f4").copy(),
                r.drop_at,
            )
            for r in rows
        ]

    async def purge_expired(self) -> int:
        async with self._engine.begin() as conn:
            res = await conn.execute(delete(t).where(t.c.drop_at <= time.time()))
        return int(res.rowcount or 0)
