"""Event sources. Each turns what it sees into events for the dispatcher."""

from .schedule import Scheduler, next_after

__all__ = ["Scheduler", "next_after"]
