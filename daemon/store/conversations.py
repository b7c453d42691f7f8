"""What GitHub conversations remember past one process and across replicas: each run's
status comment, and whom a refusal was told when."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .repository import Repository
from .tables import MENTION_REFUSALS, StatusCommentRow, utcnow


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
