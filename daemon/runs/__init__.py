"""Runs: their states, the RunEvent stream, the inbox and the executor."""

from .bus import EventBus, Subscription, envelope_of
from .events import (
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
)
from .executor import Executor
from .inbox import Cancel, Decision, Inbox, InboxMessage, Steer
from .status import RunStatus

__all__ = [
    "RUN_EVENT",
    "ApprovalDecision",
    "ApprovalRequest",
    "Artifact",
    "Cancel",
    "Command",
    "Decision",
    "Envelope",
    "EventBus",
    "Executor",
    "FileChange",
    "Finished",
    "Inbox",
    "InboxMessage",
    "Message",
    "RunEvent",
    "RunStatus",
    "Started",
    "StatusChanged",
    "Steer",
    "SteerReceived",
    "Step",
    "Subscription",
    "envelope_of",
]
