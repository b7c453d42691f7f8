"""The executor: takes queued runs, drives each through its agent backend in its workspace,
and owns every run state transition while the daemon lives."""

from .budget import MAX_BYTES, MAX_EVENTS, LogBudget
from .executor import Executor
from .lifecycle import expiry
from .recovery import left_on

__all__ = ["MAX_BYTES", "MAX_EVENTS", "Executor", "LogBudget", "expiry", "left_on"]
