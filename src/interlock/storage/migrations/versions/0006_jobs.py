"""jobs (the durable job queue)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        # INTEGER PRIMARY KEY is SQLite's rowid: the enqueue order (FIFO, list paging).
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("team", sa.String(200), nullable=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("callback_url", sa.Text, nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("deadline", sa.Float, nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("cost_usd", sa.String(48), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("dead", sa.Boolean, nullable=False),
        sa.Column("duplicate_completions", sa.Integer, nullable=False),
        sa.Column("webhook_state", sa.String(16), nullable=True),
    )
    # The lease query: status = 'queued' ORDER BY priority DESC, seq (run_at filtered).
    op.create_index("ix_jobs_status_priority_seq", "jobs", ["status", "priority", "seq"])
    # Reclaim (running, lease_until < now) and the deadline sweep (queued, deadline <= now).
    op.create_index("ix_jobs_status_lease_until", "jobs", ["status", "lease_until"])
    op.create_index("ix_jobs_status_deadline", "jobs", ["status", "deadline"])
    op.create_index("ix_jobs_owner_seq", "jobs", ["owner", "seq"])
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant", "status"])
    # NULL keys never collide, so jobs without an Idempotency-Key are unconstrained.
    op.create_index(
        "ux_jobs_owner_idempotency_key", "jobs", ["owner", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_table("jobs")
