"""The store: every event, run, step and decision, in SQLite or PostgreSQL.

Methods are synchronous and short; async callers go through `Store.call`, which runs them on
the store's own worker thread so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog
from sqlalchemy import Connection, Table, func, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, select

from ..durations import format_duration
from ..errors import RunNotFound, StoreError
from ..runs import UNFINISHED
from ..secrets import json_text, redactor
from . import refusals, schema
from .engine import make_engine, start_checkpointer
from .requests import Decision, Dispatched, DispatchRequest, NewRun
from .tables import (
    ApprovalRow,
    DecisionRow,
    EventRow,
    LoggedEvent,
    OutboxItem,
    OutboxRow,
    RefusalRow,
    RunEventRow,
    RunRow,
    ScheduleStateRow,
    utcnow,
)

if TYPE_CHECKING:
    from .writer import WriterProcess

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


_EVENTS = _table("events")
_RUNS = _table("runs")
_DECISIONS = _table("event_decisions")
_SCHEDULES = _table("schedule_state")
_RUN_EVENTS = _table("run_events")
_OUTBOX = _table("outbox")
# The run states that are not an end, as stored text.
_UNFINISHED = tuple(s.value for s in UNFINISHED)


_MAX_BATCH = 256
_IN_FLIGHT = 2


def _run_row(new: NewRun, event_id: int | None, now: datetime | None = None) -> RunRow:
    return RunRow(
        automation=new.automation,
        trigger=new.trigger,
        event_id=event_id,
        inputs=redactor.redact_obj(new.inputs),
        attempt=new.attempt,
        retry_of=new.retry_of,
        not_before=new.not_before,
        key=new.key,
        created_at=now or utcnow(),
    )


class _RawRows:
    """A table's rows as plain SQL reads them on the hot connection: the column list to
    select, and a row turned into the values Core would give (SQLAlchemy's own result
    processors: timestamps as aware UTC datetimes, JSON parsed)."""

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


class Store:
    """Persistent state of the daemon."""

    def __init__(self, url: str, *, checkpoint: bool = True) -> None:
        self._url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time anyway; one thread keeps writes ordered.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self._insert = dialect_insert
        # Built once: executing with parameters reuses SQLAlchemy's compiled form.
        self._insert_event = (
            dialect_insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id)
        )
        self._insert_events = (
            dialect_insert(_EVENTS).on_conflict_do_nothing().returning(_EVENTS.c.id, _EVENTS.c.key)
        )
        self._insert_run = insert(_RUNS).returning(_RUNS.c.id)
        self._insert_run_event = insert(_RUN_EVENTS).returning(_RUN_EVENTS.c.id)
        self._insert_outbox = insert(_OUTBOX).returning(_OUTBOX.c.id)
        self._seqs: dict[int, int] = {}  # run id -> last sequence number written
        # `log`, on the event loop: run id -> last number given; failed hand-overs.
        self._logged: dict[int, int] = {}
        self._log_failures: dict[int, BaseException] = {}
        self._checkpointer = (
            start_checkpointer(self.engine) if checkpoint and self.dialect == "sqlite" else None
        )
        self._pending: list[tuple[DispatchRequest, asyncio.Future[Dispatched | None]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._process: WriterProcess | None = None
        self._starting: asyncio.Task[None] | None = None
        self._raw: Any = None  # see `_hot`
        # The hot path's timestamps, in the very form Core stores a `UTCDateTime` here.
        dialect = self.engine.dialect
        processor = _RUN_EVENTS.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        self._sqlite_time: Callable[[Any], Any] = processor or (lambda value: value)
        self._runs, self._events = _RawRows(_RUNS, dialect), _RawRows(_EVENTS, dialect)
        self._decisions = _RawRows(_DECISIONS, dialect)

    def create_all(self) -> None:
        """Bring the database to this build's schema: made when empty, upgraded when behind."""
        schema.upgrade(self.engine)

    def open_schema(self, *, upgrade_behind: bool) -> None:
        """Make an empty database; refuse one that is behind (`SchemaBehind`, naming the
        command that upgrades it) unless `upgrade_behind`."""
        schema.ensure(self.engine, upgrade_behind=upgrade_behind)

    @property
    def writes_in_process(self) -> bool:
        """True when a writer process of its own stores dispatched events."""
        return self._process is not None

    def start_writer_process(self) -> asyncio.Task[None] | None:
        """Start a writer process of its own for dispatched events, in the background
        (`writer`); until it is ready, and if it cannot start, the store thread writes them.

        Returns the starting task (the same one on every call), or None for an in-memory
        SQLite database, which lives in this process only.
        """
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return None
        if self._starting is None:
            self._starting = asyncio.create_task(self._start_process(), name="event-writer")
        return self._starting

    async def _start_process(self) -> None:
        from .writer import WriterProcess  # started only where a writer is wanted

        process = WriterProcess(self._url)
        try:
            await process.start()
        except StoreError as exc:
            log.warning("events are written by the store thread", reason=str(exc))
            return
        self._process = process

    async def stop_writer_process(self) -> None:
        """Stop the writer process once the batches already submitted are written."""
        if self._starting is not None:
            await self._starting
        while busy := [t for t in self._writers if not t.done()]:
            await asyncio.wait(busy)
        process, self._process = self._process, None
        if process is not None:
            await process.close()

    def close(self) -> None:
        """Release connections and the worker thread."""
        if self._raw is not None:
            self._pool.submit(self._raw.close).result()
            self._raw = None
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._pool.shutdown(wait=True)
        self.engine.dispose()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store method on the store thread and await its result. This is the store's
        boundary: a database exception leaves it as a `StoreError` naming the method."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except SQLAlchemyError as exc:
            raise wrap_errors(exc, getattr(fn, "__name__", "store call")) from exc

    def hand_over(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run a store method on the store thread without waiting for it: the store thread
        runs what it is given in order, so whatever is asked of it later runs after."""
        return self._pool.submit(fn, *args, **kwargs)

    async def log(self, run_id: int, type: str, data: dict[str, Any]) -> LoggedEvent:
        """Append one event to a run's log from the event loop: where it goes, at once.

        A run's first event waits for its write (it learns the run's place in the log);
        after that each event is numbered here and its write handed to the store thread
        without waiting for it: a reported step costs a hand-over instead of a round trip,
        whose way back (the store thread waking the event loop through its self-pipe) cost
        the event loop ~40-70 µs of CPU per event, and ~100 µs in all (measured). Nothing
        reads a log but through the store thread, which writes in order, so any later read
        sees the event. While a run is logged here its log takes no other appends; a write
        that failed fails the run's next `log`.
        """
        failed = self._log_failures.pop(run_id, None)
        if failed is not None:
            raise StoreError(f"run {run_id}: its log could not be written: {failed}")
        seq = self._logged.get(run_id)
        if seq is None:
            row = await self.call(self.append_run_event, run_id, type, data)
            self._logged[run_id] = row.seq
            return row
        seq += 1
        self._logged[run_id] = seq
        at = utcnow()
        written = self.hand_over(self.append_run_event, run_id, type, data, at, seq=seq)
        written.add_done_callback(functools.partial(self._log_written, run_id))
        if type == "finished":  # later events of the run (a retry's note) ask the store again
            del self._logged[run_id]
        return LoggedEvent(None, run_id, seq, at)

    def _log_written(self, run_id: int, written: Future[LoggedEvent]) -> None:
        # On the store thread: only a failure is news (the next `log` of the run raises it).
        if not written.cancelled() and (exc := written.exception()) is not None:
            log.error("run event not stored", run_id=run_id, error=str(exc))
            self._log_failures[run_id] = exc

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- events and runs ------------------------------------------------------------------
    async def submit(self, request: DispatchRequest) -> Dispatched | None:
        """Store an event (group commit); returns once it is committed.

        Requests that arrive while a transaction is being written wait for the next one and
        share it, so a burst of deliveries costs a few commits instead of one each, while
        every caller still hears back only after its own event is durable.
        """
        if request.received_at is None:
            request.received_at = utcnow()
        future: asyncio.Future[Dispatched | None] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if len(self._writers) < _IN_FLIGHT:
            # Up to two batches in flight: the writer starts the next one as soon as it has
            # committed one, instead of idling while this loop collects the results.
            task = asyncio.create_task(self._write_pending())
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        return await future

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                results = await self._dispatch([r for r, _ in batch])
            except Exception:
                if len(batch) == 1:
                    results = None
                else:
                    # Isolate a poisonous request: write the batch one by one.
                    self._pending = [(r, f) for r, f in batch] + self._pending
                    await self._write_singly(len(batch))
                    continue
            for index, (request, future) in enumerate(batch):
                if future.done():
                    continue
                if results is None:
                    future.set_exception(StoreError(f"could not store {request.source} event"))
                else:
                    future.set_result(results[index])

    async def _write_singly(self, count: int) -> None:
        batch, self._pending = self._pending[:count], self._pending[count:]
        for request, future in batch:
            try:
                (result,) = await self._dispatch([request])
            except Exception as exc:
                if not future.done():
                    error = StoreError(f"could not store {request.source} event: {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)
            else:
                if not future.done():
                    future.set_result(result)

    async def _dispatch(self, requests: list[DispatchRequest]) -> list[Dispatched | None]:
        if self._process is not None:
            return await self._process.dispatch_many(requests)
        return await self.call(self.dispatch_many, requests)

    def dispatch(self, **fields: Any) -> Dispatched | None:
        """Store one event now (synchronous; see `DispatchRequest` for the fields)."""
        return self.dispatch_many([DispatchRequest(**fields)])[0]

    def dispatch_many(self, requests: Sequence[DispatchRequest]) -> list[Dispatched | None]:
        """Store events, their decisions and runs in one transaction.

        An event whose key was stored before yields None: a redelivery, or a schedule slot
        another replica fired already. Keyed events of a batch go in as one multi-row insert
        and all decisions as one executemany: a burst costs a few statements, not two each.
        """
        with self.engine.begin() as conn:
            stored = self._insert_keyed(conn, requests)
            decision_rows: list[dict[str, Any]] = []
            out: list[Dispatched | None] = []
            for req in requests:
                if req.key is not None and len(requests) > 1:
                    event_id = stored.pop(req.key, None)  # popped: a repeat in the batch is None
                else:
                    event_id = self._insert_one(conn, req)
                out.append(
                    None if event_id is None else self._decide(conn, req, event_id, decision_rows)
                )
            if decision_rows:
                conn.execute(insert(_DECISIONS), decision_rows)
            return out

    @staticmethod
    def _event_row(req: DispatchRequest) -> dict[str, Any]:
        return {
            "source": req.source,
            "type": req.type,
            "key": req.key,
            "identity": req.identity,
            "received_at": req.received_at or utcnow(),
            "payload": redactor.redact_json_text(req.payload_json)
            if req.payload_json is not None
            else redactor.redact_json(req.payload),
        }

    def _insert_keyed(
        self, conn: Connection, requests: Sequence[DispatchRequest]
    ) -> dict[str, int]:
        """Insert the batch's keyed events at once; key → id of those that were new."""
        if len(requests) < 2:
            return {}
        rows = {r.key: self._event_row(r) for r in requests if r.key is not None}
        if not rows:
            return {}
        # executemany with RETURNING: SQLAlchemy sends it as multi-row INSERTs
        # ("insertmanyvalues"), compiled once and cached.
        result = conn.execute(self._insert_events, list(rows.values()))
        return {str(key): int(event_id) for event_id, key in result}

    def _insert_one(self, conn: Connection, req: DispatchRequest) -> int | None:
        event_id = conn.execute(self._insert_event, self._event_row(req)).scalar()
        return None if event_id is None else int(event_id)

    def _decide(
        self,
        conn: Connection,
        req: DispatchRequest,
        event_id: int,
        decision_rows: list[dict[str, Any]],
    ) -> Dispatched:
        """Runs and decision rows for a stored event (decisions are inserted by the caller)."""
        out = Dispatched(event_id)
        now = req.received_at or utcnow()
        for d in req.decisions:
            run_id = d.run_id
            supersedes: list[int] = []
            if d.run is not None and d.run.guard is not None:
                verdict, detail, supersedes = self._guard(conn, d.run, now)
                if verdict is not None:
                    d = Decision(d.automation, verdict, detail)
            if d.run is not None:
                run = _run_row(d.run, out.event_id, now)
                values = run.model_dump(exclude={"id"})
                run.id = run_id = conn.execute(self._insert_run, values).scalar_one()
                out.runs.append(run)
                out.superseded.update(dict.fromkeys(supersedes, run_id))
            decision_rows.append(
                {
                    "event_id": out.event_id,
                    "automation": d.automation,
                    "decision": d.decision,
                    "detail": d.detail,
                    "run_id": run_id,
                }
            )
        if req.schedule_mark is not None:
            automation, trigger_key, at = req.schedule_mark
            upsert = self._insert(_SCHEDULES).values(
                automation=automation, trigger_key=trigger_key, last_fire_at=at
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["automation", "trigger_key"],
                    set_={"last_fire_at": upsert.excluded.last_fire_at},
                    where=_SCHEDULES.c.last_fire_at < upsert.excluded.last_fire_at,
                )
            )
        return out

    @staticmethod
    def _guard(conn: Connection, new: NewRun, now: datetime) -> tuple[str | None, str, list[int]]:
        """(decision that replaces `matched`, detail, runs to supersede) for a would-be run."""
        guard = new.guard
        assert guard is not None
        runs = _RUNS.c
        same = (runs.automation == new.automation) & (
            runs.key.is_(None) if new.key is None else runs.key == new.key
        )
        if new.key is not None and guard.dedup_window > timedelta(0):
            prior = conn.execute(
                select(runs.id)
                .where(same, runs.created_at >= now - guard.dedup_window)
                .order_by(runs.id.desc())
                .limit(1)
            ).scalar()
            if prior is not None:
                return "deduplicated", f"key {new.key!r} started run {prior} within the window", []
        supersede: list[int] = []
        if new.key is not None and guard.on_active != "queue":
            active = list(
                conn.execute(
                    select(runs.id).where(
                        same, runs.status.in_(("queued", "running", "waiting", "paused"))
                    )
                ).scalars()
            )
            if active and guard.on_active == "leave":
                return "deduplicated", f"run {active[0]} for key {new.key!r} is still active", []
            supersede = active
        if guard.throttle is not None:
            limit, per = guard.throttle
            count = conn.execute(
                select(func.count()).select_from(_RUNS).where(same, runs.created_at >= now - per)
            ).scalar_one()
            if count >= limit:
                scope = f"key {new.key!r}" if new.key is not None else "this automation"
                return (
                    "throttled",
                    f"{count} runs for {scope} in the last {format_duration(per)}",
                    [],
                )
        return None, "", supersede

    def create_run(self, new: NewRun, event_id: int | None = None) -> RunRow:
        """Create a queued run outside an event (retries)."""
        with self._session() as s:
            run = _run_row(new, event_id)
            s.add(run)
            s.commit()
            return run

    def runs_for_event_key(self, key: str) -> list[RunRow]:
        """Runs started by the event stored under `key`."""
        with self._session() as s:
            q = (
                select(RunRow)
                .join(EventRow, col(EventRow.id) == col(RunRow.event_id))
                .where(EventRow.key == key, col(RunRow.retry_of).is_(None))
            )
            return list(s.exec(q.order_by(col(RunRow.id))))

    def get_run(self, run_id: int) -> RunRow:
        """One run; raises `RunNotFound`."""
        if self.dialect == "sqlite":
            # Read at every run's start and end (its chat message): plain SQL, as `start_run`.
            rows = self._hot_read(self._runs, "SELECT {columns} FROM runs WHERE id = ?", run_id)
            if not rows:
                raise RunNotFound(run_id)
            return RunRow(**rows[0])
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            return run

    def list_runs(
        self,
        *,
        automation: str | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[RunRow]:
        """Runs, newest first unless `oldest_first`."""
        with self._session() as s:
            q = select(RunRow)
            if automation:
                q = q.where(RunRow.automation == automation)
            if statuses is not None:
                q = q.where(col(RunRow.status).in_(list(statuses)))
            order = col(RunRow.id).asc() if oldest_first else col(RunRow.id).desc()
            return list(s.exec(q.order_by(order).limit(limit)))

    def update_run(self, run_id: int, **fields: Any) -> RunRow:
        """Set fields of a run (status, started_at, finished_at, summary…)."""
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            for name, value in fields.items():
                if name == "summary" and isinstance(value, str):
                    value = redactor.redact(value)
                setattr(run, name, value)
            s.add(run)
            s.commit()
            return run

    def start_run(self, run_id: int, started_at: datetime) -> tuple[RunRow, EventRow | None] | None:
        """Take a queued run: mark it running, and return it with the event that started it
        (one round trip on the path to the agent's first step). None when it is not queued
        any more — another replica took it, or it ended — so a run starts once, however
        often it was queued."""
        if self.dialect == "sqlite":
            return self._start_run_sqlite(run_id, started_at)
        with self._session() as s:
            taken = s.connection().execute(
                update(_RUNS)
                .where(_RUNS.c.id == run_id, _RUNS.c.status == "queued")
                .values(status="running", started_at=started_at)
            )
            if taken.rowcount != 1:
                return None
            s.commit()
            run = s.get(RunRow, run_id)
            assert run is not None
            event = s.get(EventRow, run.event_id) if run.event_id is not None else None
            return run, event

    def _start_run_sqlite(
        self, run_id: int, started_at: datetime
    ) -> tuple[RunRow, EventRow | None] | None:
        # Plain SQL, as the per-step writes: through the ORM this cost ~1 ms of Python on the
        # store thread, between the trigger and the agent's first model call.
        with self._hot_transaction() as cur:
            row = cur.execute(
                self._runs.statement(
                    "UPDATE runs SET status = 'running', started_at = ? "
                    "WHERE id = ? AND status = 'queued' RETURNING {columns}"
                ),
                (self._sqlite_time(started_at), run_id),
            ).fetchone()
            if row is None:
                return None
            run = RunRow(**self._runs.read(row))
            event = self._event_sqlite(run.event_id) if run.event_id is not None else None
        return run, event

    def _event_sqlite(self, event_id: int) -> EventRow | None:
        """An event read in plain SQL on the hot connection (inside its transaction, if open)."""
        found = self._hot_read(self._events, "SELECT {columns} FROM events WHERE id = ?", event_id)
        return EventRow(**found[0]) if found else None

    def end_run(self, run_id: int, status: str, summary: str, finished_at: datetime) -> RunRow:
        """Record how a run ended, its pending approvals expiring with it, in one transaction
        (what stands between the agent's last step and the run's `finished`)."""
        reason = f"run ended ({status})"
        summary = redactor.redact(summary)
        if self.dialect == "sqlite":
            at = self._sqlite_time(finished_at)
            with self._hot_transaction() as cur:
                cur.execute(
                    "UPDATE approvals SET status = 'expired', decided_by = 'nightshift', "
                    "decided_at = ?, reason = ? WHERE run_id = ? AND status = 'pending'",
                    (at, reason, run_id),
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
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            pending = s.exec(
                select(ApprovalRow).where(
                    ApprovalRow.run_id == run_id, ApprovalRow.status == "pending"
                )
            )
            for approval in pending:
                approval.status, approval.decided_by = "expired", "nightshift"
                approval.decided_at, approval.reason = finished_at, reason
                s.add(approval)
            run.status, run.finished_at, run.summary = status, finished_at, summary
            s.add(run)
            s.commit()
            return run

    def append_run_event(
        self,
        run_id: int,
        type: str,
        data: dict[str, Any],
        at: datetime | None = None,
        *,
        seq: int | None = None,
    ) -> LoggedEvent:
        """Append one RunEvent to a run's log; `data` must already be redacted.

        One Core insert per event (this is the hot path of every run). The sequence number is
        kept in memory once known (or given, by `log`): a run's log is written only by the
        daemon executing it, and all writes go through this store's one thread.
        """
        at = at or utcnow()
        if self.dialect == "sqlite":
            return self._append_run_event_sqlite(run_id, type, data, at, seq)
        with self.engine.begin() as conn:
            seq = seq or self._next_seq(
                run_id,
                lambda: conn.execute(
                    select(func.coalesce(func.max(_RUN_EVENTS.c.seq), 0)).where(
                        _RUN_EVENTS.c.run_id == run_id
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
        """The next sequence number of a run's log (asks the database once per run)."""
        seq = self._seqs.get(run_id)
        return int(last_stored() if seq is None else seq) + 1

    def _hot(self) -> Any:
        """The store thread's own DBAPI connection for the per-event writes on SQLite.

        A run's every step is written twice (its log and its chat message): through
        SQLAlchemy's transaction machinery each write cost ~100 µs of Python on top of
        SQLite's own ~85 µs, all of it competing with the agent for the GIL. These two
        statements are plain enough to send as SQL; everything else goes through Core.
        """
        if self._raw is None:
            self._raw = self.engine.raw_connection()  # WAL, busy timeout: see make_engine
        return self._raw

    def _hot_read(self, rows: _RawRows, template: str, *params: Any) -> list[dict[str, Any]]:
        """Rows of one plain SELECT on the hot connection, as Core would read them: the reads
        of every run's start and end, where a session cost four times SQLite's own work."""
        cur = self._hot().cursor()
        try:
            return [rows.read(row) for row in cur.execute(rows.statement(template), params)]
        finally:
            cur.close()

    def _hot_write(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """One writing statement on the hot connection, as its own transaction: SQLite's
        autocommit takes the write lock when the statement first writes (so it cannot fail to
        upgrade, as a deferred transaction that read first can) and commits when it is done.
        One statement instead of BEGIN, it and COMMIT: a third of the GIL hand-offs on the
        per-step writes. Returns what it returned (RETURNING), all of it read."""
        cur = self._hot().cursor()
        try:
            rows: list[Any] = cur.execute(sql, params).fetchall()
            return rows
        finally:
            cur.close()

    @contextlib.contextmanager
    def _hot_transaction(self) -> Iterator[Any]:
        """A `BEGIN IMMEDIATE` … `COMMIT` on the hot connection; yields its cursor."""
        conn = self._hot()
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

    def _append_run_event_sqlite(
        self, run_id: int, type: str, data: dict[str, Any], at: datetime, seq: int | None
    ) -> LoggedEvent:
        seq = seq or (self._seqs[run_id] + 1 if run_id in self._seqs else None)
        values = (self._sqlite_time(at), type, json_text(data))
        if seq is None:  # the run's first event here: its number and its write, together
            with self._hot_transaction() as cur:
                last = cur.execute(
                    "SELECT coalesce(max(seq), 0) FROM run_events WHERE run_id = ?", (run_id,)
                ).fetchone()[0]
                seq = int(last) + 1
                row_id = cur.execute(self._INSERT_RUN_EVENT, (run_id, seq, *values)).fetchone()[0]
        else:
            row_id = self._hot_write(self._INSERT_RUN_EVENT, (run_id, seq, *values))[0][0]
        self._seqs[run_id] = seq
        return LoggedEvent(row_id, run_id, seq, at)

    _INSERT_RUN_EVENT = (
        "INSERT INTO run_events (run_id, seq, at, type, data) VALUES (?, ?, ?, ?, ?) RETURNING id"
    )

    def run_events(
        self, run_id: int, after_seq: int = 0, type: str | None = None
    ) -> list[RunEventRow]:
        """A run's log from `after_seq` on (only events of `type`, if given)."""
        with self._session() as s:
            q = select(RunEventRow).where(RunEventRow.run_id == run_id, RunEventRow.seq > after_seq)
            if type is not None:
                q = q.where(RunEventRow.type == type)
            return list(s.exec(q.order_by(col(RunEventRow.seq))))

    def list_events(self, limit: int = 50, source: str | None = None) -> list[EventRow]:
        """Recent events, newest first."""
        with self._session() as s:
            q = select(EventRow)
            if source:
                q = q.where(EventRow.source == source)
            return list(s.exec(q.order_by(col(EventRow.id).desc()).limit(limit)))

    def get_event(self, event_id: int) -> tuple[EventRow, list[DecisionRow]] | None:
        """An event and what it meant for each automation."""
        if self.dialect == "sqlite":
            event = self._event_sqlite(event_id)
            if event is None:
                return None
            decisions = self._hot_read(
                self._decisions,
                "SELECT {columns} FROM event_decisions WHERE event_id = ? ORDER BY id",
                event_id,
            )
            return event, [DecisionRow(**row) for row in decisions]
        with self._session() as s:
            event = s.get(EventRow, event_id)
            if event is None:
                return None
            q = select(DecisionRow).where(DecisionRow.event_id == event_id)
            return event, list(s.exec(q.order_by(col(DecisionRow.id))))

    # -- approvals ------------------------------------------------------------------------
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

    # -- refusals -------------------------------------------------------------------------
    def record_refusal(
        self, source: str, delivery: str | None, status: int, reason: str, client: str | None
    ) -> None:
        """Keep a refused delivery for `nightshift events --refused` (the newest only)."""
        refusals.record(self.engine, source, delivery, status, reason, client, utcnow())

    def refusals(self, limit: int = 50) -> list[RefusalRow]:
        """The newest refused deliveries first."""
        return refusals.newest(self.engine, limit)

    # -- outbox ---------------------------------------------------------------------------
    def add_outbox(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> OutboxItem:
        """Queue a chat message for delivery (payload already rendered and redacted)."""
        created = utcnow()
        if self.dialect == "sqlite":
            item_id = self._hot_write(
                "INSERT INTO outbox (run_id, channel, kind, payload, parent_id, status, "
                "attempts, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?) RETURNING id",
                (run_id, channel, kind, json_text(payload), parent_id, self._sqlite_time(created)),
            )[0][0]
        else:
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
            with self.engine.begin() as conn:
                item_id = conn.execute(self._insert_outbox, values).scalar_one()
        return OutboxItem(
            int(item_id), run_id, channel, kind, payload, parent_id, created_at=created
        )

    def outbox(
        self, run_id: int | None = None, status: str | None = None, limit: int = 200
    ) -> list[OutboxRow]:
        """Outbox items in delivery order (of one run, or all)."""
        with self._session() as s:
            q = select(OutboxRow)
            if run_id is not None:
                q = q.where(OutboxRow.run_id == run_id)
            if status is not None:
                q = q.where(OutboxRow.status == status)
            return list(s.exec(q.order_by(col(OutboxRow.id)).limit(limit)))

    def pending_outbox(self, after_id: int = 0, limit: int = 200) -> list[OutboxItem]:
        """Pending outbox items with ids above `after_id`, in delivery order."""
        q = (
            _OUTBOX.select()
            .where(_OUTBOX.c.status == "pending", _OUTBOX.c.id > after_id)
            .order_by(_OUTBOX.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [OutboxItem(**row) for row in conn.execute(q).mappings()]

    def get_outbox(self, item_id: int) -> OutboxItem | None:
        """One outbox item."""
        with self.engine.connect() as conn:
            row = conn.execute(_OUTBOX.select().where(_OUTBOX.c.id == item_id)).mappings().first()
        return None if row is None else OutboxItem(**row)

    def current_attempt(self, run_id: int) -> int:
        """The newest retry in `run_id`'s chain of attempts (itself when never retried)."""
        with self._session() as s:
            while True:
                q = (
                    select(RunRow.id)
                    .where(RunRow.retry_of == run_id)
                    .order_by(col(RunRow.id).desc())
                )
                nxt = s.exec(q).first()
                if nxt is None:
                    return run_id
                run_id = nxt

    def attempts(self, run_id: int) -> list[RunRow]:
        """`run_id`'s chain of attempts up to it, first first."""
        chain: list[RunRow] = []
        with self._session() as s:
            next_id: int | None = run_id
            while next_id is not None:
                run = s.get(RunRow, next_id)
                if run is None:
                    break
                chain.append(run)
                next_id = run.retry_of
        return chain[::-1]

    def first_attempt(self, run_id: int) -> int:
        """The first run of `run_id`'s chain of retries."""
        with self._session() as s:
            while True:
                run = s.get(RunRow, run_id)
                if run is None or run.retry_of is None:
                    return run_id
                run_id = run.retry_of

    def run_for_thread(self, channel_id: str, ts: str) -> int | None:
        """The run whose parent message is `ts` in `channel_id` (a thread reply's run)."""
        with self._session() as s:
            q = (
                select(OutboxRow.run_id)
                .where(
                    OutboxRow.kind == "parent",
                    OutboxRow.channel_id == channel_id,
                    OutboxRow.thread_ts == ts,
                )
                .order_by(col(OutboxRow.id).desc())
            )
            return s.exec(q).first()

    def parent_outbox(self, run_id: int) -> OutboxRow | None:
        """The run's parent message item, if one was queued."""
        with self._session() as s:
            q = select(OutboxRow).where(OutboxRow.run_id == run_id, OutboxRow.kind == "parent")
            return s.exec(q).first()

    def mark_outbox(
        self,
        ids: Sequence[int],
        status: str,
        *,
        ts: str | None = None,
        error: str | None = None,
        channel_id: str | None = None,
        thread_ts: str | None = None,
    ) -> None:
        """Record the outcome of delivering items (one UPDATE for all of them)."""
        if not ids:
            return
        if self.dialect == "sqlite":
            self._mark_outbox_sqlite(ids, status, ts, error, channel_id, thread_ts)
            return
        values: dict[str, Any] = {
            "status": status,
            "error": error,
            "attempts": _OUTBOX.c.attempts + 1,
        }
        for name, value in (("ts", ts), ("channel_id", channel_id), ("thread_ts", thread_ts)):
            if value is not None:
                values[name] = value
        if status == "sent":
            values["sent_at"] = utcnow()
        with self.engine.begin() as conn:
            conn.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(list(ids))).values(**values))

    def _mark_outbox_sqlite(
        self,
        ids: Sequence[int],
        status: str,
        ts: str | None,
        error: str | None,
        channel_id: str | None,
        thread_ts: str | None,
    ) -> None:
        # Called after every Slack delivery: plain SQL on the hot connection, like the run log
        # (the Core UPDATE cost ~490 µs of CPU a call, this ~70 µs: measured).
        sets, params = ["status = ?", "error = ?", "attempts = attempts + 1"], [status, error]
        for name, value in (("ts", ts), ("channel_id", channel_id), ("thread_ts", thread_ts)):
            if value is not None:
                sets.append(f"{name} = ?")
                params.append(value)
        if status == "sent":
            sets.append("sent_at = ?")
            params.append(self._sqlite_time(utcnow()))
        marks = ", ".join("?" * len(ids))
        # Only fixed column names and placeholders are formatted into the statement.
        sql = f"UPDATE outbox SET {', '.join(sets)} WHERE id IN ({marks})"  # noqa: S608
        self._hot_write(sql, (*params, *ids))

    # -- schedules ------------------------------------------------------------------------
    def last_fire(self, automation: str, trigger_key: str) -> datetime | None:
        """The last slot a schedule fired or was registered at."""
        with self._session() as s:
            row = s.get(ScheduleStateRow, (automation, trigger_key))
            return row.last_fire_at if row else None

    def mark_schedule(self, automation: str, trigger_key: str, at: datetime) -> None:
        """Advance a schedule's last fire (never backwards)."""
        with self._session() as s:
            self._mark(s, automation, trigger_key, at)
            s.commit()

    @staticmethod
    def _mark(s: Session, automation: str, trigger_key: str, at: datetime) -> None:
        row = s.get(ScheduleStateRow, (automation, trigger_key))
        if row is None:
            s.add(ScheduleStateRow(automation=automation, trigger_key=trigger_key, last_fire_at=at))
        elif row.last_fire_at < at:
            row.last_fire_at = at
            s.add(row)


def wrap_errors(exc: SQLAlchemyError, doing: str) -> StoreError:
    """A database exception as nightshift's own: what was being done and the driver's first
    line (its SQL and parameters stay in the log, not in a message a person sees)."""
    orig = getattr(exc, "orig", None)
    first = (str(orig if orig is not None else exc).splitlines() or [""])[0]
    return StoreError(f"database error in {doing}: {exc.__class__.__name__}: {first}")
