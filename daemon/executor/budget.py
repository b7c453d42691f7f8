"""How much of one run's event stream is stored: the rest is counted and summarised.

A skill that prints 200 MB of noise would otherwise store every line as an event: the database
grows by hundreds of megabytes and the daemon's memory with it. Past the budget, progress
events (messages, commands, steps, file changes) are counted by kind instead of stored; the
events that carry control or outcome (approvals, steering, artifacts, the end) always pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..runs import Command, FileChange, Message, RunEvent, Step

MAX_EVENTS = 5_000
"""Progress events one run stores; a long agent run makes a few hundred."""
MAX_BYTES = 8 * 1024 * 1024
"""Bytes of progress events (their text) one run stores."""

_DROPPABLE = (Message, Command, Step, FileChange)


def _size(event: RunEvent) -> int:
    if isinstance(event, Message):
        return len(event.text)
    if isinstance(event, Command):
        return len(event.command) + len(event.output_tail)
    if isinstance(event, Step):
        return len(event.title)
    return 64


@dataclass
class LogBudget:
    """The budget of one run's stored progress events."""

    max_events: int = MAX_EVENTS
    max_bytes: int = MAX_BYTES
    events: int = 0
    bytes: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_bytes: int = 0

    @property
    def full(self) -> bool:
        """Whether progress events are being counted instead of stored."""
        return bool(self.dropped)

    def admit(self, event: RunEvent) -> RunEvent | None:
        """The event to store: `event` itself, the one notice that the budget is spent, or
        None (counted, not stored)."""
        if not isinstance(event, _DROPPABLE):
            return event
        size = _size(event)
        if not self.full and self.events < self.max_events and self.bytes + size <= self.max_bytes:
            self.events += 1
            self.bytes += size
            return event
        first = not self.full
        self.dropped[event.type] += 1
        self.dropped_bytes += size
        if first:
            return Message(
                level="warning",
                text=f"this run's log is full ({self.events} events, {self.bytes} bytes): "
                "further progress is counted, not stored",
            )
        return None

    def summary(self) -> Message | None:
        """What was counted instead of stored, once the run ends (None if nothing was)."""
        if not self.full:
            return None
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.dropped.most_common())
        return Message(
            level="warning",
            text=f"not stored: {sum(self.dropped.values())} events "
            f"({self.dropped_bytes} bytes of text): {kinds}",
        )
