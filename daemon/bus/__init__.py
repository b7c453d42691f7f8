"""The RunEvent stream: every event is redacted, given its place in the run's log, then
published to subscribers.

Reporters (console, Slack) and CLI followers subscribe to the same stream, so what a person
sees is exactly what the store holds: the log is written in order on the store thread
(`Store.log`), and anything that reads it (a follower catching up, a report) reads there,
after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import structlog

from ..runs import RUN_EVENT, Envelope, RunEvent
from ..secrets import redactor
from ..store import Store

__all__ = ["EventBus", "Subscription"]

log = structlog.get_logger(__name__)


class Subscription:
    """A subscriber's queue of envelopes; iterate it to consume."""

    def __init__(self, run_id: int | None) -> None:
        self.run_id = run_id
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Envelope]:
        while True:
            yield await self.queue.get()


class EventBus:
    """Stores and fans out RunEvents."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._subs: set[Subscription] = set()

    @contextlib.contextmanager
    def subscribe(self, run_id: int | None = None) -> Iterator[Subscription]:
        """Receive every envelope published from now on (of one run, or all)."""
        sub = Subscription(run_id)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    async def emit(self, run_id: int, event: RunEvent) -> Envelope:
        """Redact, log and publish one event of a run."""
        dumped = event.model_dump(mode="json", exclude_none=True)
        data = redactor.redact_obj(dumped)
        row = await self._store.log(run_id, data["type"], data)
        # The event as stored: validated again only when redaction changed it.
        stored = event if data == dumped else RUN_EVENT.validate_python(data)
        env = Envelope(run_id=run_id, seq=row.seq, at=row.at, event=stored)
        for sub in list(self._subs):
            if sub.run_id is None or sub.run_id == run_id:
                sub.queue.put_nowait(env)
        return env
