"""A run's inbox: the only way replies (steer, approve, deny, cancel) reach a running run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True)
class Steer:
    """Steering text from a person, to be taken into the run's context."""

    text: str
    by: str
    ref: str | None = None  # where it came from, e.g. slack:<channel>:<ts>, for the second ack


@dataclass(frozen=True)
class Pause:
    """Suspend the run (its processes stop) until `Resume`."""

    by: str


@dataclass(frozen=True)
class Resume:
    """Continue a paused run."""

    by: str


@dataclass(frozen=True)
class Decision:
    """A decision on one approval request."""

    approval_id: str
    approved: bool
    by: str
    reason: str | None = None
    expired: bool = False  # the request's TTL ran out (recorded as expired, taken as a deny)


@dataclass(frozen=True)
class Cancel:
    """Stop the run."""

    by: str
    reason: str | None = None


InboxMessage = Steer | Decision | Cancel | Pause | Resume


class Inbox:
    """An ordered queue of messages for one run."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[InboxMessage] = asyncio.Queue()

    def put(self, message: InboxMessage) -> None:
        """Deliver a message (never blocks)."""
        self._queue.put_nowait(message)

    async def get(self) -> InboxMessage:
        """The next message, waiting for one."""
        return await self._queue.get()
