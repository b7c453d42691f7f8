"""Refused deliveries: recorded for people, bounded against whoever sends them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert
from sqlmodel import Session, col, select

from .repository import Repository
from .tables import RefusalRow, utcnow

KEEP = 1_000  # the newest refusals kept; an attacker's flood cannot grow the table past this


def record(
    engine: Engine,
    source: str,
    delivery: str | None,
    status: int,
    reason: str,
    client: str | None,
    at: datetime,
) -> None:
    """Store one refusal and drop those beyond the newest `KEEP`, in one transaction."""
    table = RefusalRow.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        row = {
            "source": source[:100],
            "delivery": delivery[:200] if delivery else None,
            "status": status,
            "reason": reason[:500],
            "client": client,
            "received_at": at,
        }
        new_id = conn.execute(insert(table).returning(table.c.id), row).scalar_one()
        if new_id % 100 == 0:  # pruning is a range delete; every hundredth insert is enough
            conn.execute(delete(table).where(table.c.id <= new_id - KEEP))


def newest(engine: Engine, limit: int) -> list[RefusalRow]:
    """The newest refusals first."""
    with Session(engine) as s:
        q = select(RefusalRow).order_by(col(RefusalRow.id).desc()).limit(limit)
        return list(s.exec(q))


class RefusalQueries(Repository):
    """Refused deliveries, for `nightshift events --refused`."""

    def record_refusal(
        self, source: str, delivery: str | None, status: int, reason: str, client: str | None
    ) -> None:
        """Keep a refused delivery (the newest only)."""
        record(self.engine, source, delivery, status, reason, client, utcnow())

    def refusals(self, limit: int = 50) -> list[RefusalRow]:
        """The newest refused deliveries first."""
        return newest(self.engine, limit)
