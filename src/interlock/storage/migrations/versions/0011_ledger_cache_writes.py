"""ledger: prompt-cache writes per row (5-minute and 1-hour TTL)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both are part of prompt_tokens, like cached_tokens (cache reads): rows written before
    # this knew no cache writes and read 0. A NOT NULL column with a constant default is
    # added in place on SQLite and PostgreSQL alike (no table rewrite).
    op.add_column(
        "ledger",
        sa.Column("cache_write_tokens", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column(
        "ledger",
        sa.Column("cache_write_1h_tokens", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("cache_write_1h_tokens")
        batch.drop_column("cache_write_tokens")
