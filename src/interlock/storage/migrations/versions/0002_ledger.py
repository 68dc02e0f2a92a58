"""ledger and daily roll-up

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(200), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("provider", sa.String(256), nullable=True),
        sa.Column("tier", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("saved_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache", sa.String(32), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("fallback", sa.String(256), nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float, nullable=True),
    )
    op.create_index("ix_ledger_created_at", "ledger", ["created_at"])
    op.create_index("ix_ledger_key_id", "ledger", ["key_id"])
    op.create_table(
        "ledger_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(200), primary_key=True),
        sa.Column("team_id", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("deployment", sa.String(256), primary_key=True),
        sa.Column("outcome", sa.String(64), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("saved_usd", sa.Numeric(20, 10), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_daily")
    op.drop_table("ledger")
