"""A migrated storage database on each backend: SQLite in the test's directory, or a fresh
schema in the shared PostgreSQL, dropped when the test is done.

Parametrise a fixture with :data:`BACKENDS` and open :func:`migrated` with its param.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
