"""Where state lives: the SQL database (storage) and the shared fast state (state)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interlock.settings.base import SettingsModel


class StorageSettings(SettingsModel):
    # The embedded default; PostgreSQL via "postgresql+asyncpg://user@host/db".
    url: str = "sqlite+aiosqlite:///./.interlock/interlock.db"
    pool_size: int = Field(default=5, ge=1, le=200)
    run_migrations: bool = True
    # PostgreSQL only: the schema (search_path) Interlock's tables live in.
    db_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class StateSettings(SettingsModel):
    # local: state in this process (one replica); redis: shared by every replica.
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis call may take this much of Redis's own time (event-loop lag is added
    # back, state/redis_call.py), and never more than redis_timeout_max_s in wall-clock
    # time; past it Redis counts as down and calls fail fast until a probe succeeds.
    redis_timeout_s: float = Field(default=0.25, gt=0, le=5)
    redis_timeout_max_s: float = Field(default=1.0, gt=0, le=30)
    sync_interval_s: float = Field(default=0.25, gt=0, le=5)
    key_prefix: str = "interlock:"
