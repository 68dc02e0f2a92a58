from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.settings import StorageSettings
from interlock.storage.engine import create_engine, run_migrations
from tests.support.services import PG_URL, require


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database on each backend (a fresh schema per test on PostgreSQL)."""
    if request.param == "sqlite":
        cfg = StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/t.db")
    else:
        require("PostgreSQL", "127.0.0.1", 5432)
        cfg = StorageSettings(url=PG_URL, db_schema="t_" + secrets.token_hex(6))
    eng = create_engine(cfg)
    await run_migrations(eng, cfg.db_schema)
    yield eng
    if cfg.db_schema:
        async with eng.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{cfg.db_schema}" CASCADE'))
    await eng.dispose()
