"""Approval requests: recorded when an agent asks, decided once by whoever answers first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ..errors import StoreError
from ..runs import UNFINISHED
from ..secrets import redactor
from .repository import Repository
from .tables import ApprovalRow, RunRow, utcnow

# The run states that are not an end, as stored text.
_UNFINISHED = tuple(s.value for s in UNFINISHED)


class ApprovalQueries(Repository):
    """Approval requests of runs."""

    def create_approval(
        self,
        run_id: int,
        request_id: str,
        action: str,
        description: str,
        expires_at: datetime | None,
    ) -> ApprovalRow:
        """Record a pending approval request."""
        with self._session() as s:
            row = ApprovalRow(
                run_id=run_id,
                request_id=request_id,
                action=action,
                description=redactor.redact(description),
                requested_at=utcnow(),
                expires_at=expires_at,
            )
            s.add(row)
            try:
                s.commit()
            except IntegrityError as exc:
                raise StoreError(f"run {run_id}: approval {request_id!r} requested twice") from exc
            return row

    def decide_approval(
        self, run_id: int, request_id: str, status: str, by: str, reason: str | None
    ) -> ApprovalRow | None:
        """Decide a pending request; None when it is not pending (decided already, unknown)."""
        with self._session() as s:
            row = s.exec(
                select(ApprovalRow).where(
                    ApprovalRow.run_id == run_id, ApprovalRow.request_id == request_id
                )
            ).first()
            if row is None or row.status != "pending":
                return None
            row.status, row.decided_by, row.decided_at = status, by, utcnow()
            row.reason = redactor.redact(reason) if reason else None
            s.add(row)
            s.commit()
            return row

    def approvals(self, run_id: int, status: str | None = None) -> list[ApprovalRow]:
        """A run's approval requests, oldest first."""
        with self._session() as s:
            q = select(ApprovalRow).where(ApprovalRow.run_id == run_id)
            if status:
                q = q.where(ApprovalRow.status == status)
            return list(s.exec(q.order_by(col(ApprovalRow.id))))

    def open_approvals(self) -> list[tuple[ApprovalRow, RunRow]]:
        """Every request still waiting for a person, of runs not ended, oldest first."""
        with self._session() as s:
            q = (
                select(ApprovalRow, RunRow)
                .join(RunRow, col(RunRow.id) == col(ApprovalRow.run_id))
                .where(ApprovalRow.status == "pending", col(RunRow.status).in_(_UNFINISHED))
                .order_by(col(ApprovalRow.id))
            )
            return [(a, r) for a, r in s.exec(q)]
