"""What the command center shows of runs: a run as a card (the board's and the API's), the
board's columns, and one event of a run's log as the page renders it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..runs import RunStatus
from ..spec import Automation
from ..store import RunEventRow, RunRow, utcnow

# The board's columns, in the order the page shows them, and the states each one holds.
COLUMNS: tuple[tuple[str, str, tuple[RunStatus, ...]], ...] = (
    ("needs-you", "Needs you", (RunStatus.WAITING,)),
    ("running", "Running", (RunStatus.RUNNING, RunStatus.PAUSED)),
    ("queued", "Queued", (RunStatus.QUEUED,)),
    ("failed", "Failed", (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED)),
    ("done", "Done", (RunStatus.SUCCEEDED, RunStatus.CANCELLED)),
)
COLUMN_OF = {status: key for key, _, states in COLUMNS for status in states}
ENDED_SHOWN = 50  # runs of the Failed and Done columns on the board (the rest: History)


@dataclass(frozen=True)
class Card:
    """One run as the board and `/api/runs` show it."""

    id: int
    automation: str
    status: str
    column: str
    trigger: str
    repository: str | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None
    last_step: str | None
    summary: str
    tokens: int
    cost_usd: float

    def to_json(self) -> dict[str, Any]:
        """The card as the JSON API answers it."""
        out = dict(self.__dict__)
        for name in ("created_at", "started_at", "finished_at"):
            value = out[name]
            out[name] = value.isoformat() if value is not None else None
        return out


def card(run: RunRow, automation: Automation | None, last: RunEventRow | None) -> Card:
    """The card of `run` (its automation as loaded now, if it still is)."""
    assert run.id is not None
    end = run.finished_at or utcnow()
    return Card(
        id=run.id,
        automation=run.automation,
        status=run.status,
        column=COLUMN_OF.get(RunStatus(run.status), "done"),
        trigger=run.trigger,
        repository=_repository(automation),
        attempt=run.attempt,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        elapsed_s=(end - run.started_at).total_seconds() if run.started_at else None,
        last_step=line_of(last.data) if last is not None else None,
        summary=run.summary,
        tokens=run.tokens,
        cost_usd=run.cost_usd,
    )


def _repository(automation: Automation | None) -> str | None:
    """The repository a run works in, where it names one (not the daemon's own folder)."""
    if automation is None or automation.workspace.repository in (".", "./"):
        return None
    return automation.workspace.repository


def line_of(data: dict[str, Any]) -> str:
    """One line for an event of a run's log (its stored, redacted form)."""
    kind = data.get("type")
    if kind == "step":
        return str(data.get("title", ""))
    if kind == "command":
        return f"$ {data.get('command', '')} → {data.get('exit_code', '?')}"
    if kind in ("message", "steer_received"):
        return str(data.get("text", ""))
    if kind == "approval_request":
        return f"asks to {data.get('action', '')}: {data.get('description', '')}"
    if kind == "approval_decision":
        verdict = "approved" if data.get("approved") else "denied"
        return f"{verdict} by {data.get('by', '')}"
    if kind == "artifact":
        return f"{data.get('kind', '')}: {data.get('title') or data.get('url') or ''}"
    if kind == "status":
        return f"now {data.get('status', '')}"
    if kind == "started":
        return f"started ({data.get('trigger', '')}, attempt {data.get('attempt', 1)})"
    if kind == "finished":
        return f"{data.get('status', '')}: {data.get('summary', '')}"
    return str(kind)
