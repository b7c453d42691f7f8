"""A conversation has one unfinished run per automation, whichever replica starts it: a
partial unique index, so the second of two mentions heard at once on two replicas steers the
run the first started instead of starting another."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UNFINISHED = "finished_at IS NULL AND substr(\"trigger\", 1, 15) = 'github_mention:'"


def upgrade() -> None:
    op.create_index(
        "ux_runs_conversation_unfinished",
        "runs",
        ["automation", "key"],
        unique=True,
        sqlite_where=sa.text(UNFINISHED),
        postgresql_where=sa.text(UNFINISHED),
    )


def downgrade() -> None:
    op.drop_index("ux_runs_conversation_unfinished", table_name="runs")
