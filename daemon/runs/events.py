"""The typed RunEvent stream: everything a run does, as the store, reporters and CLI see it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .status import RunStatus


class _Event(BaseModel):
    # Backends may send fields newer than this daemon knows; ignore them rather than fail.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Started(_Event):
    """The run began executing."""

    type: Literal["started"] = "started"
    automation: str
    trigger: str
    attempt: int = 1


class StatusChanged(_Event):
    """The run's state changed (e.g. running → waiting for an approval)."""

    type: Literal["status"] = "status"
    status: RunStatus


class Step(_Event):
    """A meaningful step began."""

    type: Literal["step"] = "step"
    title: str
    detail: str | None = None


class Message(_Event):
    """Free text from the agent or the daemon."""

    type: Literal["message"] = "message"
    text: str
    level: Literal["info", "warning", "error"] = "info"


class Command(_Event):
    """A command ran: what, how it ended, and the tail of its output."""

    type: Literal["command"] = "command"
    command: str
    exit_code: int | None = None
    output_tail: str = ""
    duration_s: float | None = None


class FileChange(_Event):
    """A file in the workspace changed."""

    type: Literal["file_change"] = "file_change"
    path: str
    change: Literal["added", "modified", "deleted", "renamed"] = "modified"


class Artifact(_Event):
    """Something the run produced: a diff, a link, a file."""

    type: Literal["artifact"] = "artifact"
    kind: Literal["diff", "link", "file", "report"] = "link"
    title: str
    url: str | None = None
    content: str | None = None


class ApprovalRequest(_Event):
    """The run asks a person before an elevated action; it waits for the decision."""

    type: Literal["approval_request"] = "approval_request"
    id: str = Field(description="unique within the run; decisions refer to it")
    action: str = Field(description="e.g. push, pull_request, network, restart")
    description: str = ""
    expires_at: datetime | None = None


class ApprovalDecision(_Event):
    """A person (or the TTL) decided an approval request."""

    type: Literal["approval_decision"] = "approval_decision"
    id: str
    approved: bool
    by: str
    reason: str | None = None


class SteerReceived(_Event):
    """A steering message reached the run's inbox."""

    type: Literal["steer_received"] = "steer_received"
    text: str
    by: str
    ref: str | None = Field(None, description="where the message came from (e.g. its Slack ts)")


class Usage(_Event):
    """Model use since the agent's previous usage report: what the run costs. It adds to the
    run's totals (the run's row), not to its step log."""

    type: Literal["usage"] = "usage"
    tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0)


class Finished(_Event):
    """The run ended."""

    type: Literal["finished"] = "finished"
    status: RunStatus
    summary: str = ""


RunEvent = Annotated[
    Started
    | StatusChanged
    | Step
    | Message
    | Command
    | FileChange
    | Artifact
    | ApprovalRequest
    | ApprovalDecision
    | SteerReceived
    | Usage
    | Finished,
    Field(discriminator="type"),
]
RUN_EVENT: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)

# What an agent backend may report; the rest belongs to the daemon.
AGENT_EVENT_TYPES = frozenset(
    {
        "step",
        "message",
        "command",
        "file_change",
        "artifact",
        "approval_request",
        "usage",
        "finished",
    }
)


class Envelope(BaseModel):
    """A stored RunEvent: which run, its position in the run's log, and when."""

    model_config = ConfigDict(frozen=True)

    run_id: int
    seq: int
    at: datetime
    event: RunEvent

    def to_json(self) -> dict[str, Any]:
        """The JSON form used by the control API and `--json` output."""
        return self.model_dump(mode="json")


class StoredEvent(Protocol):
    """What a stored run event row holds (the store's own row type has these fields)."""

    run_id: int
    seq: int
    at: datetime
    data: dict[str, Any]


def envelope_of(row: StoredEvent) -> Envelope:
    """The typed form of a stored run event."""
    return Envelope(
        run_id=row.run_id, seq=row.seq, at=row.at, event=RUN_EVENT.validate_python(row.data)
    )
