"""What GitHub conversations remember past one process and across replicas: each run's
status comment, whom a refusal was told when, and the loop breaker's count and hold."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .repository import Repository
from .tables import (
    CONVERSATION_BREAKS,
    CONVERSATION_COMMENTS,
    MENTION_REFUSALS,
    StatusCommentRow,
    utcnow,
)


class ConversationQueries(Repository):
    """Status comments and refusals of GitHub conversations."""

    def status_comment(self, run_id: int) -> StatusCommentRow | None:
        """The status comment of `run_id`'s chain of attempts (kept under its first)."""
        with self._session() as s:
            return s.get(StatusCommentRow, run_id)

    def keep_status_comment(
        self, run_id: int, repository: str, number: int, comment_id: int
    ) -> StatusCommentRow:
        """Remember the comment `run_id` (a chain's first attempt) keeps current."""
        with self._session() as s:
            row = StatusCommentRow(
                run_id=run_id, repository=repository, number=number, comment_id=comment_id
            )
            s.merge(row)
            s.commit()
            return row

    def claim_refusal(self, conversation: str, login: str, every: timedelta) -> bool:
        """Whether `login` is to be told now that they may not ask in `conversation`: True
        once per `every` (the claim is recorded in the same statement, so two replicas
        taking two of their mentions do not both answer)."""
        now = utcnow()
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        upsert = insert(MENTION_REFUSALS).values(
            conversation=conversation, login=login.lower(), told_at=now
        )
        claim = upsert.on_conflict_do_update(
            index_elements=["conversation", "login"],
            set_={"told_at": upsert.excluded.told_at},
            where=MENTION_REFUSALS.c.told_at <= now - every,
        ).returning(MENTION_REFUSALS.c.told_at)
        with self.engine.begin() as conn:
            return conn.execute(claim).first() is not None

    def note_comment(self, conversation: str, at: datetime, window: timedelta) -> int:
        """Count a comment nightshift wrote in `conversation` at `at`; how many it wrote there
        within `window` up to then (older ones are forgotten here)."""
        table = CONVERSATION_COMMENTS
        with self.engine.begin() as conn:
            conn.execute(insert(table).values(conversation=conversation, written_at=at))
            conn.execute(
                delete(table).where(
                    table.c.conversation == conversation, table.c.written_at < at - window
                )
            )
            count = select(func.count()).where(table.c.conversation == conversation)
            return int(conn.execute(count).scalar_one())

    def comments_since(self, conversation: str, since: datetime) -> int:
        """How many comments nightshift wrote in `conversation` since `since`."""
        table = CONVERSATION_COMMENTS
        q = select(func.count()).where(
            table.c.conversation == conversation, table.c.written_at >= since
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def hold_conversation(self, conversation: str, now: datetime, until: datetime) -> bool:
        """Trip the loop breaker of `conversation` until `until`: True for the one caller
        that trips it (it says so), False while it holds already."""
        insert_ = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        upsert = insert_(CONVERSATION_BREAKS).values(conversation=conversation, until=until)
        claim = upsert.on_conflict_do_update(
            index_elements=["conversation"],
            set_={"until": upsert.excluded.until},
            where=CONVERSATION_BREAKS.c.until <= now,
        ).returning(CONVERSATION_BREAKS.c.until)
        with self.engine.begin() as conn:
            return conn.execute(claim).first() is not None

    def held_until(self, conversation: str) -> datetime | None:
        """Until when the loop breaker of `conversation` holds (None: it never tripped)."""
        q = select(CONVERSATION_BREAKS.c.until).where(
            CONVERSATION_BREAKS.c.conversation == conversation
        )
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()
