"""One run's life while it executes here: its inbox, its agent, its status, its approval
timers and its worktree, owned by one object from admission to the end of its drive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

import structlog

from ..agents import AgentRun
from ..config import StateLayout
from ..durations import format_duration
from ..errors import NightshiftError
from ..runs import (
    ApprovalDecision,
    ApprovalRequest,
    Cancel,
    Command,
    Decision,
    Finished,
    Inbox,
    Message,
    Pause,
    Resume,
    RunEvent,
    RunStatus,
    StatusChanged,
    Steer,
    SteerReceived,
    Usage,
)
from ..spec import Automation
from ..store import Store, cost_capped, utcnow
from .budget import LogBudget
from .trees import RunTree

log = structlog.get_logger(__name__)

OUTPUT_TAIL = 4000  # characters of a command's output kept in its step
DRAIN_AFTER_CANCEL = 15.0  # seconds a cancelled agent has to report how it ended

Emit = Callable[[int, RunEvent], Awaitable[None]]
# Hands an approval's deadline to the engine (run, approval, when): True when the engine
# keeps it (a Temporal workflow timer) and brings the expiry back to the inbox; False, and a
# timer of this process keeps it.
HoldDeadline = Callable[[int, str, datetime], Awaitable[bool]]


def expiry(approval_id: str, at: datetime) -> Decision:
    """The decision an approval's deadline makes when nobody did."""
    return Decision(
        approval_id=approval_id,
        approved=False,
        by="nightshift",
        reason=f"expired at {at:%Y-%m-%d %H:%M} UTC with no decision",
        expired=True,
    )


class RunLifecycle:
    """A run executing in this daemon.

    The executor makes one when it admits a run and forgets it when the run is finished;
    between the two, everything that happens to the run goes through it: messages for the
    run enter `inbox` (steering, decisions, pause, resume, cancel, approval expiries) and are
    served to the agent one at a time while `drive` consumes the agent's events.
    """

    def __init__(
        self,
        run_id: int,
        automation: str,
        *,
        store: Store,
        emit: Emit,
        deadline: HoldDeadline | None = None,
    ) -> None:
        self.run_id = run_id
        self.automation = automation
        self.inbox = Inbox()
        self.agent: AgentRun | None = None
        self.task: asyncio.Task[None] | None = None  # the executor's task driving it
        self.status = RunStatus.RUNNING
        self.tree: RunTree | None = None  # its worktree, when it works in one
        self.started = asyncio.Event()  # `started` is in the log
        self.budget = LogBudget()  # what of its progress is stored
        self.cancelled_by: str | None = None
        self.capped: str | None = None  # why `policies.cost_cap` stopped it
        self.interrupted = False
        self.lost = False  # another replica took the run over: nothing more is reported here
        self.fenced = False  # its agent is frozen until this replica knows the run is its own
        # The inbox server is waiting for the next message (nothing half handled to lose).
        self.inbox_idle = True
        self.inbox_closed = False
        self._store = store
        self._emit_to = emit
        self._timers: list[asyncio.TimerHandle] = []
        self._deadline = deadline

    async def emit(self, event: RunEvent) -> None:
        """Put an event in the run's stream (stored, then published)."""
        await self._emit_to(self.run_id, event)

    async def set_status(self, status: RunStatus) -> None:
        """Store and announce a change of the run's status (nothing when it is the same)."""
        if self.status == status:
            return
        self.status = status
        await self._store.call(self._store.update_run, self.run_id, status=status.value)
        await self.emit(StatusChanged(status=status))

    def start_tree(self, repo: Path, automation: str, base: str | None, state: StateLayout) -> None:
        """Start making the run's worktree; `close_tree` ends it whatever ends the run."""
        self.tree = RunTree(self.run_id, repo, base, state, self._emit_to, self.started)
        self.tree.start(automation)

    async def close_tree(self, *, keep: bool) -> None:
        """Commit what the run left in its worktree and release it (kept when `keep`)."""
        if self.tree is not None:
            await self.tree.close(keep)

    async def interrupt(self) -> None:
        """Stop the agent because the daemon stops: the run ends `interrupted`."""
        self.interrupted = True
        if self.agent is not None:
            await self.agent.cancel()

    async def drive(self, agent: AgentRun, automation: Automation) -> tuple[RunStatus, str]:
        """Consume the agent's events until it finishes, serving the inbox meanwhile; the
        run's end and its summary."""
        inbox_task = asyncio.create_task(self._serve_inbox(agent))
        policies = automation.policies
        finished: Finished | None = None
        timed_out = False
        stream = agent.events()
        try:
            try:
                async with asyncio.timeout(policies.timeout.total_seconds()):
                    finished = await self._consume(stream, automation)
            except TimeoutError:
                timed_out = True
                await agent.cancel()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_AFTER_CANCEL):
                        await self._consume(stream, automation)
        finally:
            for timer in self._timers:
                timer.cancel()
            # A message in hand is finished first: an agent that took a steer and finished at
            # once must not lose the record that it took it (the "taken" acknowledgement).
            self.inbox_closed = True
            if self.inbox_idle:
                inbox_task.cancel()
            await asyncio.wait({inbox_task}, timeout=DRAIN_AFTER_CANCEL)
            inbox_task.cancel()
            if inbox_task.done() and not inbox_task.cancelled() and inbox_task.exception():
                log.warning(
                    "run inbox failed", run_id=self.run_id, error=str(inbox_task.exception())
                )
        summary = self.budget.summary()
        if summary is not None:
            await self.emit(summary)
        if timed_out:
            return RunStatus.TIMED_OUT, f"timed out after {format_duration(policies.timeout)}"
        if self.interrupted:
            return RunStatus.INTERRUPTED, "the daemon was stopped"
        if self.cancelled_by is not None:
            return RunStatus.CANCELLED, f"cancelled by {self.cancelled_by}"
        if self.capped is not None:
            return RunStatus.FAILED, f"stopped: {self.capped}"
        if finished is None:
            return RunStatus.FAILED, "the agent ended without a result"
        return finished.status, finished.summary

    async def _consume(
        self, stream: AsyncIterator[RunEvent], automation: Automation
    ) -> Finished | None:
        async for event in stream:
            if isinstance(event, Finished):
                return event
            if isinstance(event, Command) and len(event.output_tail) > OUTPUT_TAIL:
                event = event.model_copy(
                    update={"output_tail": "[…truncated]\n" + event.output_tail[-OUTPUT_TAIL:]}
                )
            if isinstance(event, ApprovalRequest):
                await self._request_approval(event, automation)
                continue
            if isinstance(event, Usage):
                await self._count(event, automation)
                continue
            kept = self.budget.admit(event)
            if kept is not None:
                await self.emit(kept)
        return None

    async def _count(self, usage: Usage, automation: Automation) -> None:
        """Add a usage report to the run's totals; stop the agent once its key's spend in
        the cap's window reaches `policies.cost_cap`."""
        store = self._store
        run = await store.call(store.add_usage, self.run_id, usage.tokens, usage.cost_usd)
        cap = automation.policies.cost_cap
        if cap is None or self.capped is not None or usage.cost_usd <= 0:
            return
        spent = await store.call(store.spent, automation.name, run.key, utcnow() - cap.per)
        if spent >= cap.max_usd:
            self.capped = cost_capped(run.key, spent, cap.max_usd, cap.per)
            log.warning("run stopped by its cost cap", run_id=self.run_id, spent=spent)
            await self.emit(Message(level="warning", text=f"stopping: {self.capped}"))
            if self.agent is not None:
                await self.agent.cancel()

    async def _request_approval(self, event: ApprovalRequest, automation: Automation) -> None:
        if event.expires_at is None:
            expires_at = utcnow() + automation.policies.approval_ttl
            event = event.model_copy(update={"expires_at": expires_at})
        assert event.expires_at is not None
        try:
            await self._store.call(
                self._store.create_approval,
                self.run_id,
                event.id,
                event.action,
                event.description,
                event.expires_at,
            )
        except NightshiftError as exc:
            await self.emit(Message(level="warning", text=str(exc)))
            return
        await self.emit(event)
        await self.set_status(RunStatus.WAITING)
        held = self._deadline is not None and await self._deadline(
            self.run_id, event.id, event.expires_at
        )
        if not held:
            self._expire_later(event.id, event.expires_at)

    def _expire_later(self, approval_id: str, at: datetime) -> None:
        """When the request's time is up, an expiry enters the inbox like any decision."""
        delay = max((at - utcnow()).total_seconds(), 0.0)
        made = expiry(approval_id, at)
        handle = asyncio.get_running_loop().call_later(delay, self.inbox.put, made)
        self._timers.append(handle)

    async def _serve_inbox(self, agent: AgentRun) -> None:
        while not self.inbox_closed:
            self.inbox_idle = True
            msg = await self.inbox.get()
            self.inbox_idle = False
            if isinstance(msg, Steer):
                await agent.steer(msg.text, msg.by)
                # Recorded once the agent has it: reporters acknowledge "taken" from this.
                await self.emit(SteerReceived(text=msg.text, by=msg.by, ref=msg.ref))
            elif isinstance(msg, Pause | Resume):
                pausing = isinstance(msg, Pause)
                await (agent.pause() if pausing else agent.resume())
                await self.emit(Message(text=f"{'paused' if pausing else 'resumed'} by {msg.by}"))
                await self.set_status(RunStatus.PAUSED if pausing else await self._unpaused())
            elif isinstance(msg, Decision):
                await self._decide(agent, msg)
            elif isinstance(msg, Cancel):
                self.cancelled_by = msg.by
                note = f"cancel requested by {msg.by}" + (f": {msg.reason}" if msg.reason else "")
                await self.emit(Message(text=note))
                await agent.cancel()

    async def _decide(self, agent: AgentRun, msg: Decision) -> None:
        outcome = "expired" if msg.expired else "approved" if msg.approved else "denied"
        row = await self._store.call(
            self._store.decide_approval, self.run_id, msg.approval_id, outcome, msg.by, msg.reason
        )
        if row is None:
            return  # decided already: a second click changes nothing
        await self.emit(
            ApprovalDecision(
                id=msg.approval_id, approved=msg.approved, by=msg.by, reason=msg.reason
            )
        )
        pending = await self._store.call(self._store.approvals, self.run_id, "pending")
        if not pending and self.status == RunStatus.WAITING:
            await self.set_status(RunStatus.RUNNING)
        await agent.decide(msg.approval_id, msg.approved, msg.reason)

    async def _unpaused(self) -> RunStatus:
        """What a resumed run is: waiting again when a request is still open."""
        pending = await self._store.call(self._store.approvals, self.run_id, "pending")
        return RunStatus.WAITING if pending else RunStatus.RUNNING
