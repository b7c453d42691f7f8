"""Line comments on runs' diffs, kept as they were sent."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from ..secrets import redactor
from .repository import Repository
from .tables import ReviewCommentRow, utcnow


class ReviewQueries(Repository):
    """A run's review comments."""

    def add_review(
        self, run_id: int, comments: Sequence[tuple[str, int, str, str]], by: str
    ) -> list[ReviewCommentRow]:
        """Keep one review's comments — (path, line, anchor, text) each — in one transaction."""
        at = utcnow()
        rows = [
            ReviewCommentRow(
                run_id=run_id,
                path=path,
                line=line,
                anchor=redactor.redact(anchor),
                text=redactor.redact(text),
                by=by,
                at=at,
            )
            for path, line, anchor, text in comments
        ]
        with self._session() as s:
            s.add_all(rows)
            s.commit()
            return rows

    def review_comments(self, run_id: int) -> list[ReviewCommentRow]:
        """A run's review comments, oldest first."""
        with self._session() as s:
            q = select(ReviewCommentRow).where(ReviewCommentRow.run_id == run_id)
            return list(s.exec(q.order_by(col(ReviewCommentRow.id))))
