"""Durable state: events, runs, the step log, approvals and schedule marks."""

from .dispatching import cost_capped
from .requests import Decision, Dispatched, DispatchRequest, NewRun, RunGuard
from .store import Store
from .tables import (
    ApprovalRow,
    DecisionRow,
    EventRow,
    LoggedEvent,
    OutboxItem,
    OutboxRow,
    RefusalRow,
    ReplicaRow,
    ReviewCommentRow,
    RunEventRow,
    RunRow,
    utcnow,
)

__all__ = [
    "ApprovalRow",
    "Decision",
    "DecisionRow",
    "DispatchRequest",
    "Dispatched",
    "EventRow",
    "LoggedEvent",
    "NewRun",
    "OutboxItem",
    "OutboxRow",
    "RefusalRow",
    "ReplicaRow",
    "ReviewCommentRow",
    "RunEventRow",
    "RunGuard",
    "RunRow",
    "Store",
    "cost_capped",
    "utcnow",
]
