"""Replicas sharing the database: registered at start, beating while alive."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from .repository import Repository
from .tables import ReplicaRow, utcnow


class ReplicaQueries(Repository):
    """The daemons on this database and their heartbeats."""

    def register_replica(self, replica_id: str, host: str, pid: int) -> None:
        """Record this daemon as alive now."""
        now = utcnow()
        with self._session() as s:
            s.merge(ReplicaRow(id=replica_id, host=host, pid=pid, started_at=now, heartbeat_at=now))
            s.commit()

    def beat(self, replica_id: str) -> None:
        """This daemon is still alive."""
        with self._session() as s:
            row = s.get(ReplicaRow, replica_id)
            if row is not None:
                row.heartbeat_at = utcnow()
                s.add(row)
                s.commit()

    def live_replicas(self, within: timedelta) -> list[ReplicaRow]:
        """The replicas whose heartbeat is younger than `within`, oldest first."""
        since = utcnow() - within
        with self._session() as s:
            q = select(ReplicaRow).where(col(ReplicaRow.heartbeat_at) >= since)
            return list(s.exec(q.order_by(col(ReplicaRow.started_at))))

    def forget_replica(self, replica_id: str) -> None:
        """This daemon stopped cleanly (its runs have ended or were interrupted)."""
        with self._session() as s:
            row = s.get(ReplicaRow, replica_id)
            if row is not None:
                s.delete(row)
                s.commit()
