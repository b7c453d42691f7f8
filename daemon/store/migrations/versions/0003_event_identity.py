"""An event's identity: what a payload says it is (for GitHub, the delivered body of an
event about one object), unique like the delivery key, so a captured delivery re-sent under
a new delivery id is a duplicate."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("identity", sa.String(), nullable=True))
    op.create_index("ix_events_identity", "events", ["identity"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_events_identity", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("identity")
