"""record_reviews: a person's decision on each output record; jobs.parent_*: a job that makes
a new take of another job's record (regenerate, edit).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_reviews",
        sa.Column("job_id", sa.String(32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("at", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32)))
        batch.add_column(sa.Column("parent_index", sa.Integer()))
        batch.add_column(sa.Column("parent_kind", sa.String(16)))
        batch.add_column(sa.Column("seed", sa.BigInteger()))
    op.create_index("ix_jobs_parent_id", "jobs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_parent_id", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("seed")
        batch.drop_column("parent_kind")
        batch.drop_column("parent_index")
        batch.drop_column("parent_id")
    op.drop_table("record_reviews")
