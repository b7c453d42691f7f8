"""Capturing a daemon's run events in a test, as `structlog.testing.capture_logs` captures
log entries: everything the bus publishes while the block is open, as it was stored."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ..bus import EventBus, Subscription
from ..runs import Envelope, RunEvent


class CapturedEvents:
    """The envelopes published since the capture began (read at any time, in order)."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self._seen: list[Envelope] = []

    @property
    def envelopes(self) -> list[Envelope]:
        """Every envelope so far: run id, sequence number, time and the event."""
        queue = self._subscription.queue
        while True:
            try:
                self._seen.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                return list(self._seen)

    @property
    def events(self) -> list[RunEvent]:
        """The events so far, as their runs stored them (redacted)."""
        return [env.event for env in self.envelopes]

    @property
    def types(self) -> list[str]:
        """The events' types so far (`started`, `step`, …, `finished`)."""
        return [event.type for event in self.events]


@contextlib.contextmanager
def capture_events(bus: EventBus, run_id: int | None = None) -> Iterator[CapturedEvents]:
    """Capture what `bus` publishes inside the block (of run `run_id`, or of every run)."""
    with bus.subscribe(run_id) as subscription:
        yield CapturedEvents(subscription)
