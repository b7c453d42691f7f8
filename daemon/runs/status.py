"""Run states and the transitions between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """queued → running ⇄ waiting → succeeded | failed | cancelled | interrupted | timed_out."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        """True for the terminal states."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)


ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING)
TERMINAL = tuple(s for s in RunStatus if s.finished)
