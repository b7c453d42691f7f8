"""The run vocabulary every box shares: run states, the RunEvents a run reports, and the
messages that flow back into a run's inbox. A leaf: it imports nothing of nightshift's."""

from .events import (
    AGENT_EVENT_TYPES,
    RUN_EVENT,
    ApprovalDecision,
    ApprovalRequest,
    Artifact,
    Command,
    Envelope,
    FileChange,
    Finished,
    Message,
    RunEvent,
    Started,
    StatusChanged,
    SteerReceived,
    Step,
    envelope_of,
)
from .inbox import Cancel, Decision, Inbox, InboxMessage, Pause, Resume, Steer
from .status import EXECUTING, TERMINAL, UNFINISHED, RunStatus

__all__ = [
    "AGENT_EVENT_TYPES",
    "EXECUTING",
    "RUN_EVENT",
    "TERMINAL",
    "UNFINISHED",
    "ApprovalDecision",
    "ApprovalRequest",
    "Artifact",
    "Cancel",
    "Command",
    "Decision",
    "Envelope",
    "FileChange",
    "Finished",
    "Inbox",
    "InboxMessage",
    "Message",
    "Pause",
    "Resume",
    "RunEvent",
    "RunStatus",
    "Started",
    "StatusChanged",
    "Steer",
    "SteerReceived",
    "Step",
    "envelope_of",
]
