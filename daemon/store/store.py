"""The store: every event, run, step and decision, in SQLite or PostgreSQL.

Methods are synchronous and short; async callers go through `Store.call`, which runs them on
the store's own worker thread so the event loop never waits on the database. The store is
made of parts, one job each: the queries per kind of row (`run_queries`, `approvals`,
`outbox`, `schedules`, `refusals`, `conversations`, …), the dispatch transaction
(`dispatching`), group commit (`group_commit`), the run log's numbering (`run_log`), and
the row path every step takes (`rows`, and `sqlite_rows` on SQLite).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreError
from ..secrets import redactor
from . import schema
from .approvals import ApprovalQueries
from .automation_states import AutomationStateQueries
from .conversations import ConversationQueries
from .dispatching import DispatchTransaction
from .engine import make_engine, start_checkpointer
from .group_commit import GroupCommit
from .outbox import OutboxQueries
from .refusals import RefusalQueries
from .replicas import ReplicaQueries
from .requests import Dispatched, DispatchRequest
from .reviews import ReviewQueries
from .rows import PortableRows, RowPath
from .run_log import RunLog
from .run_queries import RunQueries
from .schedules import ScheduleQueries
from .sqlite_rows import SqliteRows
from .tables import DecisionRow, EventRow, LoggedEvent, OutboxItem, RunRow, utcnow

if TYPE_CHECKING:
    from .writer import WriterProcess

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


S = TypeVar("S", bound=type)


def _at_the_boundary(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` with a database exception leaving it as nightshift's own `StoreError`."""

    @functools.wraps(fn)
    def translated(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: SQLite's fast path
            raise wrap_errors(exc, fn.__name__) from exc

    return translated


def _boundary(cls: S) -> S:
    """The store's boundary: every public synchronous method — called on the store thread by
    the daemon, directly by the CLI's reads and by the writer process — raises a database
    error as a `StoreError` naming the method (its SQL and parameters stay in the log)."""
    for name in dir(cls):
        member = inspect.getattr_static(cls, name)
        if (
            not name.startswith("_")
            and inspect.isfunction(member)
            and not inspect.iscoroutinefunction(member)
            and name not in ("hand_over", "start_writer_process")
        ):
            setattr(cls, name, _at_the_boundary(member))
    return cls


@_boundary
class Store(
    RunQueries,
    ApprovalQueries,
    OutboxQueries,
    ScheduleQueries,
    RefusalQueries,
    ConversationQueries,
    AutomationStateQueries,
    ReviewQueries,
    ReplicaQueries,
):
    """Persistent state of the daemon.

    `fast_path=False` takes SQLite's per-step reads and writes through SQLAlchemy as on
    PostgreSQL (the parity suite compares the two).
    """

    def __init__(self, url: str, *, checkpoint: bool = True, fast_path: bool = True) -> None:
        self._url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time anyway; one thread keeps writes ordered.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._rows: RowPath = (
            SqliteRows(self.engine)
            if fast_path and self.dialect == "sqlite"
            else PortableRows(self.engine)
        )
        self._transaction = DispatchTransaction(self.engine)
        self._commits = GroupCommit(self._dispatch)
        self._run_log = RunLog(self.append_run_event, self.call, self.hand_over)
        self._checkpointer = (
            start_checkpointer(self.engine) if checkpoint and self.dialect == "sqlite" else None
        )
        self._process: WriterProcess | None = None
        self._starting: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
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
        await self._commits.drain()
        process, self._process = self._process, None
        if process is not None:
            await process.close()

    def close(self) -> None:
        """Release connections and the worker thread."""
        self._pool.submit(self._rows.close).result()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._pool.shutdown(wait=True)
        self.engine.dispose()

    # -- the store thread -----------------------------------------------------------------
    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store method on the store thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def hand_over(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run a store method on the store thread without waiting for it: the store thread
        runs what it is given in order, so whatever is asked of it later runs after."""
        return self._pool.submit(fn, *args, **kwargs)

    async def log(self, run_id: int, type: str, data: dict[str, Any]) -> LoggedEvent:
        """Append one event to a run's log from the event loop (see `run_log.RunLog`)."""
        return await self._run_log.log(run_id, type, data)

    # -- events ---------------------------------------------------------------------------
    async def submit(self, request: DispatchRequest) -> Dispatched | None:
        """Store an event with its decisions and runs (group commit); returns once it is
        committed, None when its key was stored before."""
        return await self._commits.submit(request)

    async def _dispatch(self, requests: list[DispatchRequest]) -> list[Dispatched | None]:
        if self._process is not None:
            return await self._process.dispatch_many(requests)
        return await self.call(self.dispatch_many, requests)

    def dispatch(self, **fields: Any) -> Dispatched | None:
        """Store one event now (synchronous; see `DispatchRequest` for the fields)."""
        return self.dispatch_many([DispatchRequest(**fields)])[0]

    def dispatch_many(self, requests: Sequence[DispatchRequest]) -> list[Dispatched | None]:
        """Store events, their decisions and runs in one transaction (`dispatching`)."""
        return self._transaction.write(requests)

    # -- the row path ---------------------------------------------------------------------
    def get_run(self, run_id: int) -> RunRow:
        """One run; raises `RunNotFound`."""
        return self._rows.get_run(run_id)

    def start_run(
        self, run_id: int, started_at: datetime, owner: str | None = None
    ) -> tuple[RunRow, EventRow | None] | None:
        """Take a queued run for the replica `owner`: mark it running, and return it with the
        event that started it (one round trip on the path to the agent's first step). None
        when it is not queued any more — another replica took it, or it ended — so a run
        starts once, however often it was queued."""
        return self._rows.start_run(run_id, started_at, owner)

    def end_run(self, run_id: int, status: str, summary: str, finished_at: datetime) -> RunRow:
        """Record how a run ended, its pending approvals expiring with it, in one transaction
        (what stands between the agent's last step and the run's `finished`)."""
        return self._rows.end_run(run_id, status, redactor.redact(summary), finished_at)

    def append_run_event(
        self,
        run_id: int,
        type: str,
        data: dict[str, Any],
        at: datetime | None = None,
        *,
        seq: int | None = None,
    ) -> LoggedEvent:
        """Append one RunEvent to a run's log; `data` must already be redacted."""
        return self._rows.append_run_event(run_id, type, data, at or utcnow(), seq)

    def get_event(self, event_id: int) -> tuple[EventRow, list[DecisionRow]] | None:
        """An event and what it meant for each automation."""
        return self._rows.get_event(event_id)

    def add_outbox(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> OutboxItem:
        """Queue a chat message for delivery (payload already rendered and redacted)."""
        return self._rows.add_outbox(run_id, channel, kind, payload, parent_id)

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
        if ids:
            self._rows.mark_outbox(ids, status, ts, error, channel_id, thread_ts)


def wrap_errors(exc: SQLAlchemyError | sqlite3.Error, doing: str) -> StoreError:
    """A database exception as nightshift's own: what was being done and the driver's first
    line (its SQL and parameters stay in the log, not in a message a person sees)."""
    orig = getattr(exc, "orig", None)
    first = (str(orig if orig is not None else exc).splitlines() or [""])[0]
    return StoreError(f"database error in {doing}: {exc.__class__.__name__}: {first}")
