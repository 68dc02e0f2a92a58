"""The SQL schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

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
    Column("limits", JSON, nullable=True),
)

ledger = Table(
    "ledger",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("key_id", String(32), nullable=True, index=True),
    Column("user_id", String(200), nullable=True),
    Column("team_id", String(200), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(256), nullable=True),
    Column("deployment", String(256), nullable=True),
    Column("provider", String(256), nullable=True),
    Column("tier", String(64), nullable=True),
    Column("status", Integer, nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("usage_estimated", Boolean, nullable=False),
    Column("cost_usd", Numeric(20, 10), nullable=False),
    Column("saved_usd", Numeric(20, 10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("cache", String(32), nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("fallback", String(256), nullable=True),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float, nullable=True),
    # The worst case reserved (migration 0009); a replica_lost row's cost until reconciled.
    Column("reserved_usd", Numeric(20, 10), nullable=True),
    # Prompt-cache writes (migration 0011), part of prompt_tokens like cached_tokens (reads):
    # 5-minute TTL (Anthropic's default, Bedrock) and 1-hour TTL.
    Column("cache_write_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_write_1h_tokens", Integer, nullable=False, server_default="0"),
)

# What `interlock spend reconcile` did: per provider, bucket range and model, the
# provider's usage against the ledger, and how replica_lost rows were rewritten.
ledger_reconcile = Table(
    "ledger_reconcile",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ran_at", DateTime(timezone=True), nullable=False),
    Column("provider", String(256), nullable=False),
    Column("model", String(256), nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("end_at", DateTime(timezone=True), nullable=False),
    Column("provider_requests", Integer, nullable=False),
    Column("provider_usd", Numeric(20, 10), nullable=False),
    Column("ledger_usd", Numeric(20, 10), nullable=False),
    Column("lost_rows", Integer, nullable=False),
    Column("lost_before_usd", Numeric(20, 10), nullable=False),
    Column("lost_after_usd", Numeric(20, 10), nullable=False),
    Column("unattributed_usd", Numeric(20, 10), nullable=False),
)

ledger_daily = Table(
    "ledger_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("user_id", String(200), primary_key=True),
    Column("team_id", String(200), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("deployment", String(256), primary_key=True),
    Column("outcome", String(64), primary_key=True),
    Column("requests", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_usd", Numeric(20, 10), nullable=False),
    Column("saved_usd", Numeric(20, 10), nullable=False),
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("window", String(16), nullable=False),
    Column("limit_usd", Numeric(20, 10), nullable=True),
    Column("budget_usd", Numeric(20, 10), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("value", Text, nullable=False),
    Column("drop_at", Float, nullable=False, index=True),
)

# The semantic cache's vectors, shared by every replica (cache.semantic.backend: sql).
# Each replica tails this table by ``id`` into its own in-process index.
semantic_entries = Table(
    "semantic_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("partition", String(64), nullable=False),
    Column("cache_key", String(300), nullable=False),
    Column("text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("drop_at", Float, nullable=False, index=True),
)
