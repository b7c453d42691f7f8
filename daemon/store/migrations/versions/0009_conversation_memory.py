"""What a GitHub conversation remembers past one process: the status comment each run (and
its retries) keeps current, and when a person was last told they may not ask."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_comments",
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("repository", sa.String(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "mention_refusals",
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("login", sa.String(), nullable=False),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("conversation", "login"),
    )


def downgrade() -> None:
    op.drop_table("mention_refusals")
    op.drop_table("status_comments")
