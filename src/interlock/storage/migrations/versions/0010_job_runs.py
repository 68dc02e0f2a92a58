"""jobs: a run counter that nothing resets, and which run the shown outcome came from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Run n's ledger request id is "<job id>-<n>" (jobs/queue/base.py). Before this
    # column the id used the attempt number, which a requeue reset, so a job that ever
    # ran may have used any number up to max_attempts (attempts never passes it): its
    # next run starts above that. A job that never ran (started_at NULL) starts at 1.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("runs", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("result_run", sa.Integer, nullable=True))
    op.execute("UPDATE jobs SET runs = max_attempts WHERE started_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_run")
        batch.drop_column("runs")
