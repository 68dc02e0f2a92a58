"""Storage databases for tests.

* :func:`migrated`: a migrated database on each backend, SQLite in the test's directory or
  a fresh schema in the shared PostgreSQL, dropped when the test is done (parametrise a
  fixture with :data:`BACKENDS` and open it with its param).
* :func:`db_rows` / :func:`pg_ledger`: what a gateway process wrote, read from outside it
  (its embedded SQLite file, or its PostgreSQL schema); :func:`drop_pg_schema` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from interlock.settings import StorageSettings
from interlock.storage.engine import create_engine, run_migrations
from tests.support.services import PG_URL, require

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    settings: StorageSettings  # what another engine (another "replica") connects with


@contextlib.asynccontextmanager
async def migrated(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """``backend`` "sqlite" or "postgres" (skipped when PostgreSQL is not reachable)."""
    if backend == "sqlite":
        cfg = StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    else:
        require("PostgreSQL", "127.0.0.1", 5432)
        cfg = StorageSettings(url=PG_URL, db_schema="t_" + secrets.token_hex(6))
    engine = create_engine(cfg)
    try:
        await run_migrations(engine, cfg.db_schema)
        yield Database(engine, cfg)
    finally:
        if cfg.db_schema:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{cfg.db_schema}" CASCADE'))
        await engine.dispose()


def db_rows(state: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of ``sql`` in the embedded database of a gateway whose state_dir is ``state``."""
    db = sqlite3.connect(state / "interlock.db", timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args)]
    finally:
        db.close()


def pg_ledger(schema: str) -> list[dict[str, Any]]:
    """Every ledger row in ``schema`` of the shared PostgreSQL (read directly, never through
    a test's proxy)."""

    async def read() -> list[dict[str, Any]]:
        engine = create_async_engine(PG_URL)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(text(f'SELECT * FROM "{schema}".ledger'))
                return [dict(r._mapping) for r in result.fetchall()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def drop_pg_schema(schema: str) -> None:
    """Drop a schema a gateway process made in the shared PostgreSQL (if it did)."""

    async def drop() -> None:
        engine = create_async_engine(PG_URL)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            await engine.dispose()

    asyncio.run(drop())
