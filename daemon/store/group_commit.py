"""Group commit of dispatched events: requests that arrive while a transaction is being
written wait for the next one and share it, so a burst of deliveries costs a few commits
instead of one each, while every caller still hears back only after its own event is
durable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..errors import StoreError
from .requests import Dispatched, DispatchRequest
from .tables import utcnow

_MAX_BATCH = 256
_IN_FLIGHT = 2

Write = Callable[[list[DispatchRequest]], Awaitable[list[Dispatched | None]]]


class GroupCommit:
    """Batches `submit`s into calls of `write`, on the event loop."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self._pending: list[tuple[DispatchRequest, asyncio.Future[Dispatched | None]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, request: DispatchRequest) -> Dispatched | None:
        """Store an event; returns once it is committed (None: its key was stored before)."""
        if request.received_at is None:
            request.received_at = utcnow()
        future: asyncio.Future[Dispatched | None] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if len(self._writers) < _IN_FLIGHT:
            # Up to two batches in flight: a writer starts the next one as soon as it has
            # committed one, instead of idling while this loop collects the results.
            task = asyncio.create_task(self._write_pending())
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every batch already submitted is written."""
        while busy := [t for t in self._writers if not t.done()]:
            await asyncio.wait(busy)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            try:
                results = await self._write([r for r, _ in batch])
            except Exception:
                if len(batch) == 1:
                    results = None
                else:
                    # Isolate a poisonous request: write the batch one by one.
                    self._pending = [(r, f) for r, f in batch] + self._pending
                    await self._write_singly(len(batch))
                    continue
            for index, (request, future) in enumerate(batch):
                if future.done():
                    continue
                if results is None:
                    future.set_exception(StoreError(f"could not store {request.source} event"))
                else:
                    future.set_result(results[index])

    async def _write_singly(self, count: int) -> None:
        batch, self._pending = self._pending[:count], self._pending[count:]
        for request, future in batch:
            try:
                (result,) = await self._write([request])
            except Exception as exc:
                if not future.done():
                    error = StoreError(f"could not store {request.source} event: {exc}")
                    error.__cause__ = exc
                    future.set_exception(error)
            else:
                if not future.done():
                    future.set_result(result)
