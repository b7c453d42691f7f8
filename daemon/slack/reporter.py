"""The Slack reporter: `SlackReporter` turns the RunEvent stream into outbox items — a parent
message per run, updates of it, thread replies — for `delivery.SlackDelivery` to send."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import structlog

from ..bus import EventBus
from ..errors import NightshiftError
from ..loader import Catalog
from ..runs import (
    ApprovalDecision,
    ApprovalRequest,
    Artifact,
    Envelope,
    Finished,
    Started,
    StatusChanged,
    SteerReceived,
)
from ..secrets import redactor
from ..store import OutboxItem, Store
from . import blocks as slack_blocks

log = structlog.get_logger(__name__)


class SlackReporter:
    """RunEvents → outbox items, for automations that name a `report.channel`."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        catalog: Callable[[], Catalog],
        added: Callable[[OutboxItem], None],
        handed: Callable[[Future[OutboxItem]], None],
    ) -> None:
        self._store = store
        self._bus = bus
        self._catalog = catalog
        self._added = added  # hands each new outbox item to the delivery, in id order
        self._handed = handed  # … and each one whose write was handed over, in order
        self._parents: dict[int, tuple[int, str]] = {}  # run id -> (parent item id, channel)
        self._idle = asyncio.Event()
        self._approvals: dict[tuple[int, str], tuple[int, str]] = {}  # -> (item id, text)

    async def run(self) -> None:
        with self._bus.subscribe() as sub:
            while True:
                if sub.queue.empty():
                    self._idle.set()
                env = await sub.queue.get()
                self._idle.clear()
                try:
                    await self._handle(env)
                except Exception:  # a reporter bug must not stop the others
                    log.exception("slack reporter failed on an event", run_id=env.run_id)

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) until every event received so far is in the outbox."""
        await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    def _channel_for(self, automation: str) -> str | None:
        found = self._catalog().automations.get(automation)
        return found.report.channel if found is not None else None

    async def _handle(self, env: Envelope) -> None:
        run_id, event = env.run_id, env.event
        parent = self._parents.get(run_id)
        first_sight = isinstance(event, Started) and event.attempt == 1
        if parent is None and not first_sight:
            # A retry reports in the thread of the run's first attempt.
            first = await self._store.call(self._store.first_attempt, run_id)
            row = await self._store.call(self._store.parent_outbox, first)
            if row is not None and row.id is not None:
                parent = self._parents[run_id] = (row.id, row.channel)
        if isinstance(event, Started) and parent is None:
            run = await self._store.call(self._store.get_run, run_id)
            origin = await self._chat_origin(run.event_id)
            channel = origin["channel"] if origin else self._channel_for(event.automation)
            if channel is None:
                return
            opening = slack_blocks.parent(run)
            if origin and origin.get("thread_ts"):
                opening["thread_ts"] = origin["thread_ts"]  # started from a thread: report there
            item = await self._add(run_id, channel, "parent", opening, None)
            self._parents[run_id] = (item, channel)
            return
        if parent is None:
            return  # this run does not report to Slack
        parent_id, channel = parent
        if isinstance(event, StatusChanged | Finished) or (
            isinstance(event, Artifact) and event.url
        ):
            await self._update_parent(run_id, channel, parent_id)
        body = slack_blocks.reply(run_id, event)
        if isinstance(event, ApprovalRequest) and body is not None:
            item = await self._add(run_id, channel, "reply", body, parent_id)
            self._approvals[(run_id, event.id)] = (item, body["text"])
        elif body is not None:
            # A step's reply: nothing here needs its id, so its write is handed over without
            # waiting (see `Store.log`); the delivery takes the item once it is written.
            self._handed(
                self._store.hand_over(
                    self._store.add_outbox,
                    run_id,
                    channel,
                    "reply",
                    redactor.redact_obj(body),
                    parent_id,
                )
            )
        if isinstance(event, ApprovalDecision) and (run_id, event.id) in self._approvals:
            # The request's message loses its buttons and says who decided what, and when.
            item, text = self._approvals.pop((run_id, event.id))
            await self._add(
                run_id, channel, "update", slack_blocks.decided(text, event, env.at), item
            )
        if isinstance(event, SteerReceived) and event.ref and event.ref.startswith("slack:"):
            # The second acknowledgement: the agent has taken the reply.
            _, channel_id, ts = event.ref.split(":", 2)
            await self._add(
                run_id,
                channel,
                "reaction",
                {"channel": channel_id, "timestamp": ts, "name": "white_check_mark"},
                None,
            )
        if isinstance(event, Finished):
            self._parents.pop(run_id, None)

    async def _update_parent(self, run_id: int, channel: str, parent_id: int) -> None:
        run = await self._store.call(self._store.get_run, run_id)
        # Only the artifacts: the parent is re-rendered on every status change and refresh,
        # and a long run's whole log is thousands of rows.
        rows = await self._store.call(self._store.run_events, run_id, 0, "artifact")
        links = [(str(r.data.get("title")), str(r.data["url"])) for r in rows if r.data.get("url")]
        await self._add(run_id, channel, "update", slack_blocks.parent(run, links), parent_id)

    async def refresh(self, interval: float) -> None:
        """Re-render the parent message of every reporting run now and then: elapsed time
        stays current while a run works (a newer update supersedes a queued older one)."""
        while True:
            await asyncio.sleep(interval)
            for run_id, (parent_id, channel) in list(self._parents.items()):
                with contextlib.suppress(NightshiftError):
                    await self._update_parent(run_id, channel, parent_id)

    async def _chat_origin(self, event_id: int | None) -> dict[str, Any] | None:
        if event_id is None:
            return None
        found = await self._store.call(self._store.get_event, event_id)
        origin = found[0].payload.get("slack") if found else None
        return origin if isinstance(origin, dict) and origin.get("channel") else None

    async def _add(
        self, run_id: int, channel: str, kind: str, payload: dict[str, Any], parent_id: int | None
    ) -> int:
        row = await self._store.call(
            self._store.add_outbox, run_id, channel, kind, redactor.redact_obj(payload), parent_id
        )
        self._added(row)
        return row.id
