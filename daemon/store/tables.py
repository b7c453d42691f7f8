"""Database tables (sqlmodel). Timestamps are stored as UTC."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# A conversation's run not yet ended (its trigger is `github_mention:<key>`; `substr` reads the
# same on SQLite and PostgreSQL).
CONVERSATION_UNFINISHED = "finished_at IS NULL AND substr(\"trigger\", 1, 15) = 'github_mention:'"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (patched by freezegun in tests)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON stored as text. A `str` is taken as already serialised (and redacted) JSON."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), default=str)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class EventRow(SQLModel, table=True):
    """What a source saw. `key` is unique: a schedule slot or delivery id fires once.
    `identity` is unique too: what the payload itself says it is, where it says so (a
    captured delivery re-sent under a new delivery id has the key of a new one, not that)."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    type: str
    key: str | None = Field(default=None, sa_column=Column(String, unique=True, nullable=True))
    identity: str | None = Field(
        default=None, sa_column=Column(String, nullable=True, index=True, unique=True)
    )
    received_at: datetime = _ts(nullable=False, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONText))


class DecisionRow(SQLModel, table=True):
    """What one event meant for one automation: matched (with its run), filtered, skipped…"""

    __tablename__ = "event_decisions"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="events.id", index=True)
    automation: str = Field(index=True)
    decision: str
    detail: str = ""
    run_id: int | None = None


class RunRow(SQLModel, table=True):
    """One execution of one automation."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_automation", "status", "automation"),
        # A conversation has one unfinished run per automation, whichever replica heard the
        # mention that starts it (the second to try steers the first's run instead).
        Index(
            "ux_runs_conversation_unfinished",
            "automation",
            "key",
            unique=True,
            sqlite_where=text(CONVERSATION_UNFINISHED),
            postgresql_where=text(CONVERSATION_UNFINISHED),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    automation: str = Field(index=True)
    status: str = Field(default="queued")
    trigger: str = ""
    event_id: int | None = Field(default=None, foreign_key="events.id")
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    attempt: int = 1
    retry_of: int | None = None
    key: str | None = Field(default=None, index=True)  # the automation's dedup key
    created_at: datetime = _ts(nullable=False)
    not_before: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    summary: str = ""
    # Asked for from a fork's pull request: runs with no secrets, no network and no GitHub.
    untrusted: bool = False
    owner: str | None = None  # the replica (daemon) that took it; see `ReplicaRow`
    tokens: int = 0  # what its agent reported using (`Usage` events)
    cost_usd: float = 0.0


class RunEventRow(SQLModel, table=True):
    """One entry of a run's step log."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    seq: int
    at: datetime = _ts(nullable=False)
    type: str
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


@dataclass(slots=True)
class LoggedEvent:
    """Where `Store.append_run_event` put an event in its run's log.

    A plain object: the hot path of every run builds one per step, where a table instance
    costs ~40 µs of SQLAlchemy instrumentation. `id` is None for an event `Store.log` handed
    to the store thread without waiting for it.
    """

    id: int | None
    run_id: int
    seq: int
    at: datetime


class ApprovalRow(SQLModel, table=True):
    """An approval request and its decision."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("run_id", "request_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    request_id: str
    action: str
    description: str = ""
    status: str = "pending"  # pending | approved | denied | expired
    requested_at: datetime = _ts(nullable=False)
    expires_at: datetime | None = _ts()
    decided_at: datetime | None = _ts()
    decided_by: str | None = None
    reason: str | None = None


@dataclass(slots=True)
class OutboxItem:
    """An outbox entry as the chat delivery works with it: a plain object, for the same
    reason as `LoggedEvent` (one per reported step)."""

    id: int
    run_id: int
    channel: str
    kind: str
    payload: dict[str, Any]
    parent_id: int | None = None
    status: str = "pending"
    attempts: int = 0
    error: str | None = None
    ts: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None


class OutboxRow(SQLModel, table=True):
    """A message for a chat (Slack) waiting to be delivered, or its delivery's outcome.

    Items are delivered in id order; a reply or update names its run's parent message.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True)
    channel: str
    kind: str  # parent | update | reply
    parent_id: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = "pending"  # pending | sent | failed
    attempts: int = 0
    error: str | None = None
    ts: str | None = None  # the chat's id of the delivered message (thread parent)
    channel_id: str | None = Field(default=None, index=True)  # as the chat names the channel
    thread_ts: str | None = None  # parent rows: the thread the run reports in (own ts, or a chat's)
    created_at: datetime = _ts(nullable=False)
    sent_at: datetime | None = _ts()


class ScheduleStateRow(SQLModel, table=True):
    """The last slot each schedule fired (or was registered at), for misfire handling."""

    __tablename__ = "schedule_state"

    automation: str = Field(primary_key=True)
    trigger_key: str = Field(primary_key=True)
    last_fire_at: datetime = _ts(nullable=False)


class RefusalRow(SQLModel, table=True):
    """A delivery the HTTP server refused (bad signature, malformed body, too slow…): kept so
    a person can see why a sender's events never arrived. Only the newest are kept, and no
    payload: a refused request is not trusted with space."""

    __tablename__ = "refusals"

    id: int | None = Field(default=None, primary_key=True)
    source: str  # the source's name: github, alertmanager, slack, or a generic webhook's
    delivery: str | None = None  # the sender's delivery id, where it sent one
    status: int
    reason: str
    client: str | None = None
    received_at: datetime = _ts(nullable=False)


class AutomationStateRow(SQLModel, table=True):
    """What a person set on an automation beyond its file: paused (its fires are recorded
    as skipped and its events start nothing) until resumed. The file stays the source of
    truth for everything else."""

    __tablename__ = "automation_state"

    name: str = Field(primary_key=True)
    paused: bool = False
    by: str  # who paused or resumed it last
    at: datetime = _ts(nullable=False)


class ReviewCommentRow(SQLModel, table=True):
    """A line comment on a run's diff, sent to the run as part of one review (steering);
    `anchor` is the line's text when it was written, so a later change to it shows as
    outdated."""

    __tablename__ = "review_comments"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    path: str
    line: int  # in the new side of the diff
    anchor: str
    text: str
    by: str
    at: datetime = _ts(nullable=False)


class ReplicaRow(SQLModel, table=True):
    """A daemon sharing the database, alive while its heartbeat is fresh: a run whose owner's
    heartbeat stopped is recovered by another; a live replica's runs are left alone."""

    __tablename__ = "replicas"

    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: datetime = _ts(nullable=False)
    heartbeat_at: datetime = _ts(nullable=False)


class StatusCommentRow(SQLModel, table=True):
    """The GitHub comment a conversation run keeps current; its retries edit the same one
    (found through the first attempt), whichever replica runs them, after any restart."""

    __tablename__ = "status_comments"

    run_id: int = Field(foreign_key="runs.id", primary_key=True)  # the chain's first attempt
    repository: str
    number: int
    comment_id: int = Field(sa_column=Column(BigInteger, nullable=False))  # past 2**31 on GitHub


class MentionRefusalRow(SQLModel, table=True):
    """When a person was last told they may not ask nightshift in a conversation: told once
    an hour, by whichever replica, across restarts."""

    __tablename__ = "mention_refusals"

    conversation: str = Field(primary_key=True)  # owner/repo#number
    login: str = Field(primary_key=True)  # lower case
    told_at: datetime = _ts(nullable=False)


class ConversationCommentRow(SQLModel, table=True):
    """A comment nightshift wrote in a GitHub conversation, for the loop breaker: counted
    across replicas, kept for the breaker's window only."""

    __tablename__ = "conversation_comments"
    __table_args__ = (Index("ix_conversation_comments", "conversation", "written_at"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation: str  # owner/repo#number
    written_at: datetime = _ts(nullable=False)


class ConversationBreakRow(SQLModel, table=True):
    """Until when nightshift listens to nothing in a conversation (its loop breaker tripped),
    whichever replica tripped it."""

    __tablename__ = "conversation_breaks"

    conversation: str = Field(primary_key=True)
    until: datetime = _ts(nullable=False)


def _core(name: str) -> Table:
    return SQLModel.metadata.tables[name]


# The same tables as SQLAlchemy Core sees them, for the statements that skip the ORM.
EVENTS = _core("events")
RUNS = _core("runs")
DECISIONS = _core("event_decisions")
SCHEDULES = _core("schedule_state")
RUN_EVENTS = _core("run_events")
OUTBOX = _core("outbox")
MENTION_REFUSALS = _core("mention_refusals")
CONVERSATION_COMMENTS = _core("conversation_comments")
CONVERSATION_BREAKS = _core("conversation_breaks")
