"""Automations paused by a person (the command center), kept across restarts."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select

from .repository import Repository
from .tables import AutomationStateRow, utcnow


class AutomationStateQueries(Repository):
    """Pause and resume of automations."""

    def paused_automations(self) -> dict[str, tuple[str, datetime]]:
        """Each paused automation: who paused it, and when."""
        with self._session() as s:
            q = select(AutomationStateRow).where(col(AutomationStateRow.paused))
            return {row.name: (row.by, row.at) for row in s.exec(q)}

    def set_paused(self, name: str, paused: bool, by: str) -> AutomationStateRow:
        """Pause or resume `name` (recorded with who did it and when)."""
        with self._session() as s:
            row = s.get(AutomationStateRow, name)
            if row is None:
                row = AutomationStateRow(name=name, paused=paused, by=by, at=utcnow())
            else:
                row.paused, row.by, row.at = paused, by, utcnow()
            s.add(row)
            s.commit()
            return row
