"""The store's row path: the seven reads and writes every run makes at each step, start and
end. `RowPath` is their interface; `PortableRows` does them through SQLAlchemy on any
database, and `sqlite_rows.SqliteRows` in plain SQL on SQLite, where they are the hot path.
The parity suite (tests/test_store_parity.py) runs both on the same operations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, func, insert, select, update
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from ..errors import RunNotFound
from .tables import (
    OUTBOX,
    RUN_EVENTS,
    RUNS,
    ApprovalRow,
    DecisionRow,
    EventRow,
    LoggedEvent,
    OutboxItem,
    RunRow,
    utcnow,
)


class RowPath(Protocol):
    """The per-step reads and writes of runs; called on the store thread only."""

    def get_run(self, run_id: int) -> RunRow:
        """One run; raises `RunNotFound`."""
        ...

    def start_run(
        self, run_id: int, started_at: datetime, owner: str | None
    ) -> tuple[RunRow, EventRow | None] | None:
        """Mark a queued run running, taken by `owner`; it and its event, or None when it
        was not queued."""
        ...

    def end_run(self, run_id: int, status: str, summary: str, finished_at: datetime) -> RunRow:
        """Record a run's end (`summary` already masked), expiring its pending approvals."""
        ...

    def append_run_event(
        self, run_id: int, type: str, data: dict[str, Any], at: datetime, seq: int | None
    ) -> LoggedEvent:
        """Append one event to a run's log, numbered `seq` or next after the last."""
        ...

    def get_event(self, event_id: int) -> tuple[EventRow, list[DecisionRow]] | None:
        """An event and its decisions, in the order they were made."""
        ...

    def add_outbox(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> OutboxItem:
        """Queue a chat message."""
        ...

    def mark_outbox(
        self,
        ids: Sequence[int],
        status: str,
        ts: str | None,
        error: str | None,
        channel_id: str | None,
        thread_ts: str | None,
    ) -> None:
        """Record a delivery's outcome on the items `ids` (not empty)."""
        ...

    def close(self) -> None:
        """Release what the path holds (on the store thread)."""
        ...


class PortableRows:
    """The row path through SQLAlchemy's Core and ORM: PostgreSQL's, and SQLite's when the
    fast path is off."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert_run_event = insert(RUN_EVENTS).returning(RUN_EVENTS.c.id)
        self._insert_outbox = insert(OUTBOX).returning(OUTBOX.c.id)
        # A run's log is written only by the daemon executing it, through the store's one
        # thread: its last number is asked of the database once, then kept here.
        self._seqs: dict[int, int] = {}

    def _session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def get_run(self, run_id: int) -> RunRow:
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            return run

    def start_run(
        self, run_id: int, started_at: datetime, owner: str | None
    ) -> tuple[RunRow, EventRow | None] | None:
        with self._session() as s:
            taken = s.connection().execute(
                update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.status == "queued")
                .values(status="running", started_at=started_at, owner=owner)
            )
            if taken.rowcount != 1:
                return None
            s.commit()
            run = s.get(RunRow, run_id)
            assert run is not None
            event = s.get(EventRow, run.event_id) if run.event_id is not None else None
            return run, event

    def end_run(self, run_id: int, status: str, summary: str, finished_at: datetime) -> RunRow:
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            pending = s.exec(
                orm_select(ApprovalRow).where(
                    ApprovalRow.run_id == run_id, ApprovalRow.status == "pending"
                )
            )
            for approval in pending:
                approval.status, approval.decided_by = "expired", "nightshift"
                approval.decided_at, approval.reason = finished_at, f"run ended ({status})"
                s.add(approval)
            run.status, run.finished_at, run.summary = status, finished_at, summary
            s.add(run)
            s.commit()
            return run

    def append_run_event(
        self, run_id: int, type: str, data: dict[str, Any], at: datetime, seq: int | None
    ) -> LoggedEvent:
        with self._engine.begin() as conn:
            seq = seq or self._next_seq(
                run_id,
                lambda: conn.execute(
                    select(func.coalesce(func.max(RUN_EVENTS.c.seq), 0)).where(
                        RUN_EVENTS.c.run_id == run_id
                    )
                ).scalar_one(),
            )
            row_id = conn.execute(
                self._insert_run_event,
                {"run_id": run_id, "seq": seq, "at": at, "type": type, "data": data},
            ).scalar_one()
        self._seqs[run_id] = seq
        return LoggedEvent(row_id, run_id, seq, at)

    def _next_seq(self, run_id: int, last_stored: Callable[[], Any]) -> int:
        seq = self._seqs.get(run_id)
        return int(last_stored() if seq is None else seq) + 1

    def get_event(self, event_id: int) -> tuple[EventRow, list[DecisionRow]] | None:
        with self._session() as s:
            event = s.get(EventRow, event_id)
            if event is None:
                return None
            q = orm_select(DecisionRow).where(DecisionRow.event_id == event_id)
            return event, list(s.exec(q.order_by(col(DecisionRow.id))))

    def add_outbox(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> OutboxItem:
        created = utcnow()
        values = {
            "run_id": run_id,
            "channel": channel,
            "kind": kind,
            "payload": payload,
            "parent_id": parent_id,
            "status": "pending",
            "attempts": 0,
            "created_at": created,
        }
        with self._engine.begin() as conn:
            item_id = conn.execute(self._insert_outbox, values).scalar_one()
        return OutboxItem(
            int(item_id), run_id, channel, kind, payload, parent_id, created_at=created
        )

    def mark_outbox(
        self,
        ids: Sequence[int],
        status: str,
        ts: str | None,
        error: str | None,
        channel_id: str | None,
        thread_ts: str | None,
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "error": error,
            "attempts": OUTBOX.c.attempts + 1,
        }
        for name, value in (("ts", ts), ("channel_id", channel_id), ("thread_ts", thread_ts)):
            if value is not None:
                values[name] = value
        if status == "sent":
            values["sent_at"] = utcnow()
        with self._engine.begin() as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(list(ids))).values(**values))

    def close(self) -> None:
        pass
