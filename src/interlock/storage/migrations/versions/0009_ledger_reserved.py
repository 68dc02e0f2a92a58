"""ledger: the reserved worst case per row, and the reconciliation log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Nullable, no default: rows written before it stay as they were (nothing reserved
    # known); SQLite adds a nullable column without rewriting the table.
    op.add_column("ledger", sa.Column("reserved_usd", sa.Numeric(20, 10), nullable=True))
    # replica_lost rows are looked up by time for reconciliation.
    op.create_index("ix_ledger_outcome_created_at", "ledger", ["outcome", "created_at"])
    op.create_table(
        "ledger_reconcile",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_requests", sa.Integer, nullable=False),
        sa.Column("provider_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("ledger_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("lost_rows", sa.Integer, nullable=False),
        sa.Column("lost_before_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("lost_after_usd", sa.Numeric(20, 10), nullable=False),
        sa.Column("unattributed_usd", sa.Numeric(20, 10), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_reconcile")
    op.drop_index("ix_ledger_outcome_created_at", "ledger")
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("reserved_usd")
