"""The loop breaker of a GitHub conversation, shared by the replicas: the comments nightshift
wrote there (within the breaker's window), and until when it listens to nothing there."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_conversation_comments", "conversation_comments", ["conversation", "written_at"]
    )
    op.create_table(
        "conversation_breaks",
        sa.Column("conversation", sa.String(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("conversation"),
    )


def downgrade() -> None:
    op.drop_table("conversation_breaks")
    op.drop_index("ix_conversation_comments", table_name="conversation_comments")
    op.drop_table("conversation_comments")
