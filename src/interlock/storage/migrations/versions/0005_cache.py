"""cache entries (L3)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("drop_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cache_entries_drop_at", "cache_entries", ["drop_at"])


def downgrade() -> None:
    op.drop_table("cache_entries")
