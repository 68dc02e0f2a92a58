"""budgets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("limit_usd", sa.Numeric(20, 10), nullable=True),
        sa.Column("budget_usd", sa.Numeric(20, 10), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budgets_scope_subject", "budgets", ["scope", "subject"])


def downgrade() -> None:
    op.drop_table("budgets")
