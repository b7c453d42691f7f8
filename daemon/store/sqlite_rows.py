"""The row path on SQLite in plain SQL: the same operations as `rows.PortableRows`, for
the writes and reads every run makes at each step, start and end.

A run's every step is written twice (its log and its chat message): through SQLAlchemy's
transaction machinery each write cost ~100 µs of Python on top of SQLite's own ~85 µs, all
of it competing with the agent for the GIL; a session read cost four times SQLite's own
work (measured). These statements are plain enough to send as SQL on the store thread's own
DBAPI connection; values are read back through SQLAlchemy's own result processors, so a row
reads exactly as Core would give it (tests/test_store_parity.py holds the two paths equal).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table

from ..errors import RunNotFound
from ..secrets import json_text
from .tables import (
    DECISIONS,
    EVENTS,
    RUN_EVENTS,
    RUNS,
    DecisionRow,
    EventRow,
    LoggedEvent,
    OutboxItem,
    RunRow,
    utcnow,
)

_INSERT_RUN_EVENT = (
    "INSERT INTO run_events (run_id, seq, at, type, data) VALUES (?, ?, ?, ?, ?) RETURNING id"
)


class _RawRows:
    """A table's rows as plain SQL reads them: the column list to select, and a row turned
    into the values Core would give (timestamps as aware UTC datetimes, JSON parsed)."""

    def __init__(self, table: Table, dialect: Any) -> None:
        self._columns = ", ".join(c.name for c in table.columns)
        self._readers = [
            (c.name, c.type.dialect_impl(dialect).result_processor(dialect, None))
            for c in table.columns
        ]

    @functools.cache  # noqa: B019 - one per store, and the store lives as long as the daemon
    def statement(self, template: str) -> str:
        """`template` with `{columns}` spelt out: the table's own column names (never input)."""
        return template.format(columns=self._columns)

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            name: value if reader is None or value is None else reader(value)
            for (name, reader), value in zip(self._readers, row, strict=True)
        }


class SqliteRows:
    """The row path on one DBAPI connection of the store thread (WAL and busy timeout as
    `engine.make_engine` sets them on every connection)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._raw: Any = None  # opened on first use, on the store thread
        dialect = engine.dialect
        # Timestamps in the very form Core stores a `UTCDateTime` here.
        processor = RUN_EVENTS.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        self._time: Callable[[Any], Any] = processor or (lambda value: value)
        self._runs, self._events = _RawRows(RUNS, dialect), _RawRows(EVENTS, dialect)
        self._decisions = _RawRows(DECISIONS, dialect)
        self._seqs: dict[int, int] = {}  # run id -> last number written (see PortableRows)

    def _conn(self) -> Any:
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        return self._raw

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _read(self, rows: _RawRows, template: str, *params: Any) -> list[dict[str, Any]]:
        cur = self._conn().cursor()
        try:
            return [rows.read(row) for row in cur.execute(rows.statement(template), params)]
        finally:
            cur.close()

    def _write(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """One writing statement as its own transaction: SQLite's autocommit takes the write
        lock when the statement first writes (so it cannot fail to upgrade, as a deferred
        transaction that read first can) and commits when it is done — a third of the GIL
        hand-offs of BEGIN, it and COMMIT. Returns the rows it read."""
        cur = self._conn().cursor()
        try:
            rows: list[Any] = cur.execute(sql, params).fetchall()
            return rows
        finally:
            cur.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A `BEGIN IMMEDIATE` … `COMMIT`; yields its cursor."""
        conn = self._conn()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def get_run(self, run_id: int) -> RunRow:
        rows = self._read(self._runs, "SELECT {columns} FROM runs WHERE id = ?", run_id)
        if not rows:
            raise RunNotFound(run_id)
        return RunRow(**rows[0])

    def start_run(
        self, run_id: int, started_at: datetime, owner: str | None
    ) -> tuple[RunRow, EventRow | None] | None:
        with self._transaction() as cur:
            row = cur.execute(
                self._runs.statement(
                    "UPDATE runs SET status = 'running', started_at = ?, owner = ? "
                    "WHERE id = ? AND status = 'queued' RETURNING {columns}"
                ),
                (self._time(started_at), owner, run_id),
            ).fetchone()
            if row is None:
                return None
            run = RunRow(**self._runs.read(row))
            event = self._event(run.event_id) if run.event_id is not None else None
        return run, event

    def _event(self, event_id: int) -> EventRow | None:
        found = self._read(self._events, "SELECT {columns} FROM events WHERE id = ?", event_id)
        return EventRow(**found[0]) if found else None

    def end_run(self, run_id: int, status: str, summary: str, finished_at: datetime) -> RunRow:
        at = self._time(finished_at)
        with self._transaction() as cur:
            cur.execute(
                "UPDATE approvals SET status = 'expired', decided_by = 'nightshift', "
                "decided_at = ?, reason = ? WHERE run_id = ? AND status = 'pending'",
                (at, f"run ended ({status})", run_id),
            )
            row = cur.execute(
                self._runs.statement(
                    "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ? "
                    "RETURNING {columns}"
                ),
                (status, at, summary, run_id),
            ).fetchone()
            if row is None:
                raise RunNotFound(run_id)
        return RunRow(**self._runs.read(row))

    def append_run_event(
        self, run_id: int, type: str, data: dict[str, Any], at: datetime, seq: int | None
    ) -> LoggedEvent:
        seq = seq or (self._seqs[run_id] + 1 if run_id in self._seqs else None)
        values = (self._time(at), type, json_text(data))
        if seq is None:  # the run's first event here: its number and its write, together
            with self._transaction() as cur:
                last = cur.execute(
                    "SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
                seq = int(last) + 1
                row_id = cur.execute(_INSERT_RUN_EVENT, (run_id, seq, *values)).fetchone()[0]
        else:
            row_id = self._write(_INSERT_RUN_EVENT, (run_id, seq, *values))[0][0]
        self._seqs[run_id] = seq
        return LoggedEvent(row_id, run_id, seq, at)

    def get_event(self, event_id: int) -> tuple[EventRow, list[DecisionRow]] | None:
        event = self._event(event_id)
        if event is None:
            return None
        decisions = self._read(
            self._decisions,
            "SELECT {columns} FROM event_decisions WHERE event_id = ? ORDER BY id",
            event_id,
        )
        return event, [DecisionRow(**row) for row in decisions]

    def add_outbox(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> OutboxItem:
        created = utcnow()
        item_id = self._write(
            "INSERT INTO outbox (run_id, channel, kind, payload, parent_id, status, "
            "attempts, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?) RETURNING id",
            (run_id, channel, kind, json_text(payload), parent_id, self._time(created)),
        )[0][0]
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
        # Called after every Slack delivery (the Core UPDATE cost ~490 µs of CPU a call,
        # this ~70 µs: measured).
        sets, params = ["status = ?", "error = ?", "attempts = attempts + 1"], [status, error]
        for name, value in (("ts", ts), ("channel_id", channel_id), ("thread_ts", thread_ts)):
            if value is not None:
                sets.append(f"{name} = ?")
                params.append(value)
        if status == "sent":
            sets.append("sent_at = ?")
            params.append(self._time(utcnow()))
        marks = ", ".join("?" * len(ids))
        # Only fixed column names and placeholders are formatted into the statement.
        sql = f"UPDATE outbox SET {', '.join(sets)} WHERE id IN ({marks})"  # noqa: S608
        self._write(sql, (*params, *ids))
