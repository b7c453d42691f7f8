"""What a run costs: the tokens and dollars its agent reported, kept on the run so a cost cap
per conversation (or per dedup key) sums one column."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("tokens", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cost_usd")
        batch.drop_column("tokens")
