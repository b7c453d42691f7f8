"""Run states and the transitions between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """queued → running ⇄ waiting (an approval) | paused (until resumed) → succeeded | failed |
    cancelled | interrupted | timed_out."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        """True for the terminal states."""
        return self not in UNFINISHED


# Executing: a run in one of these holds a slot and has processes (perhaps stopped).
EXECUTING = (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PAUSED)
UNFINISHED = (RunStatus.QUEUED, *EXECUTING)
TERMINAL = tuple(s for s in RunStatus if s.finished)
