"""The SQL schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, MetaData, String, Table

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("salt", String(64), nullable=False),
    Column("hash", String(128), nullable=False),
    Column("name", String(200), nullable=True),
    Column("user_id", String(200), nullable=True, index=True),
    Column("team_id", String(200), nullable=True, index=True),
    Column("tags", JSON, nullable=False),
    Column("models", JSON, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
