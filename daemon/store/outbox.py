"""The outbox: chat messages queued by runs, read back in delivery order."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from .repository import Repository
from .tables import OUTBOX, RUNS, OutboxItem, OutboxRow


class OutboxQueries(Repository):
    """Reads of the outbox (its two writes per message are on the store's row path)."""

    def outbox(
        self, run_id: int | None = None, status: str | None = None, limit: int = 200
    ) -> list[OutboxRow]:
        """Outbox items in delivery order (of one run, or all)."""
        with self._session() as s:
            q = select(OutboxRow)
            if run_id is not None:
                q = q.where(OutboxRow.run_id == run_id)
            if status is not None:
                q = q.where(OutboxRow.status == status)
            return list(s.exec(q.order_by(col(OutboxRow.id)).limit(limit)))

    def pending_outbox(
        self, after_id: int = 0, limit: int = 200, not_of: Sequence[str] = ()
    ) -> list[OutboxItem]:
        """Pending outbox items with ids above `after_id`, in delivery order — leaving out
        those of runs owned by the replicas `not_of` (theirs to deliver)."""
        q = OUTBOX.select().where(OUTBOX.c.status == "pending", OUTBOX.c.id > after_id)
        if not_of:
            theirs = select(RUNS.c.id).where(RUNS.c.owner.in_(list(not_of)))
            q = q.where(OUTBOX.c.run_id.not_in(theirs))
        q = q.order_by(OUTBOX.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [OutboxItem(**row) for row in conn.execute(q).mappings()]

    def last_posted(self, run_id: int, before: int) -> str | None:
        """The ts of the run's last message posted in its thread before item `before` (None:
        none) — a message posted for `before` itself comes after it in the thread."""
        q = (
            select(OUTBOX.c.ts)
            .where(
                OUTBOX.c.run_id == run_id,
                OUTBOX.c.id < before,
                OUTBOX.c.kind == "reply",
                OUTBOX.c.status == "sent",
                OUTBOX.c.ts.is_not(None),
            )
            .order_by(OUTBOX.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def channel_id_of(self, channel: str) -> str | None:
        """The id Slack gave `channel` (a name such as `#ops`, or an id) when a message was
        last posted there; None if none was."""
        q = (
            select(OUTBOX.c.channel_id)
            .where(OUTBOX.c.channel == channel, OUTBOX.c.channel_id.is_not(None))
            .order_by(OUTBOX.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def get_outbox(self, item_id: int) -> OutboxItem | None:
        """One outbox item."""
        with self.engine.connect() as conn:
            row = conn.execute(OUTBOX.select().where(OUTBOX.c.id == item_id)).mappings().first()
        return None if row is None else OutboxItem(**row)

    def run_for_thread(self, channel_id: str, ts: str) -> int | None:
        """The run whose parent message is `ts` in `channel_id` (a thread reply's run)."""
        with self._session() as s:
            q = (
                select(OutboxRow.run_id)
                .where(
                    OutboxRow.kind == "parent",
                    OutboxRow.channel_id == channel_id,
                    OutboxRow.thread_ts == ts,
                )
                .order_by(col(OutboxRow.id).desc())
            )
            return s.exec(q).first()

    def parent_outbox(self, run_id: int) -> OutboxRow | None:
        """The run's parent message item, if one was queued."""
        with self._session() as s:
            q = select(OutboxRow).where(OutboxRow.run_id == run_id, OutboxRow.kind == "parent")
            return s.exec(q).first()
