"""Schedule marks: the last slot each schedule fired at, never moved backwards."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from .repository import Repository
from .tables import ScheduleStateRow


class ScheduleQueries(Repository):
    """The last fire of each schedule trigger."""

    def last_fire(self, automation: str, trigger_key: str) -> datetime | None:
        """The last slot a schedule fired or was registered at."""
        with self._session() as s:
            row = s.get(ScheduleStateRow, (automation, trigger_key))
            return row.last_fire_at if row else None

    def mark_schedule(self, automation: str, trigger_key: str, at: datetime) -> None:
        """Advance a schedule's last fire (never backwards)."""
        with self._session() as s:
            _mark(s, automation, trigger_key, at)
            s.commit()


def _mark(s: Session, automation: str, trigger_key: str, at: datetime) -> None:
    row = s.get(ScheduleStateRow, (automation, trigger_key))
    if row is None:
        s.add(ScheduleStateRow(automation=automation, trigger_key=trigger_key, last_fire_at=at))
    elif row.last_fire_at < at:
        row.last_fire_at = at
        s.add(row)
