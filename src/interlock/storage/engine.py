"""Async SQL engine for SQLite (embedded default) and PostgreSQL (cluster mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from interlock.settings import StorageSettings
from interlock.storage.files import private_dir, private_file


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL (None: another database, or in memory)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return u.database


def create_engine(cfg: StorageSettings) -> AsyncEngine:
    url = make_url(cfg.url)
    kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(cfg.url)
        if path is not None:
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files
            # the database file's mode, so they are private too whatever the umask.
            private_dir(Path(path).parent)
            private_file(path)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_size"] = cfg.pool_size
        kwargs["pool_pre_ping"] = True
        if cfg.db_schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": cfg.db_schema}}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets `serve --workers N` and the CLI read while another process writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


async def ping(engine: AsyncEngine, timeout_s: float = 2.0) -> bool:
    """Whether the database answers a trivial query within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


_MIGRATING = asyncio.Lock()


async def run_migrations(engine: AsyncEngine, db_schema: str | None = None) -> None:
    """Upgrade the schema to the newest revision (safe to call from many processes).

    Alembic keeps its environment in module globals, so within a process migrations run
    one at a time; across processes the database's own locks serialise them.
    """
    from interlock.storage.migrate import upgrade

    async with _MIGRATING, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait, then find it done.
            await conn.execute(text("SELECT pg_advisory_xact_lock(74210001)"))
            if db_schema:
                quoted = conn.dialect.identifier_preparer.quote_schema(db_schema)
                await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        await conn.run_sync(upgrade)
