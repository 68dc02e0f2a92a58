"""semantic cache vectors

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "semantic_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("partition", sa.String(64), nullable=False),
        sa.Column("cache_key", sa.String(300), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("drop_at", sa.Float, nullable=False),
    )
    op.create_index("ix_semantic_entries_drop_at", "semantic_entries", ["drop_at"])


def downgrade() -> None:
    op.drop_table("semantic_entries")
