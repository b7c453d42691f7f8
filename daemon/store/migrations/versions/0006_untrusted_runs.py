"""Untrusted runs: a run asked for from a fork's pull request is marked so, and starts with
no secrets, no network and no GitHub access."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default on both databases: no table is rebuilt, so
    # the rows that reference runs stay as they are.
    op.add_column(
        "runs", sa.Column("untrusted", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("untrusted")
