"""The in-process executor: starts queued runs within the global and per-automation limits,
drives each through its agent backend, and records every state change.

Replies reach a running run only through its `Inbox`; the executor forwards them to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from .. import workspace
from ..agents import (
    AgentBackend,
    AgentRun,
    RunContext,
    discard_journal,
    kill_orphans,
    recorded,
)
from ..bus import EventBus
from ..config import StateLayout
from ..durations import format_duration
from ..errors import NightshiftError, RunStateError
from ..loader import Catalog
from ..runs import (
    EXECUTING,
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
    Started,
    StatusChanged,
    Steer,
    SteerReceived,
)
from ..spec import Automation, Skill
from ..store import EventRow, NewRun, RunRow, Store, utcnow
from .admission import Admission
from .budget import LogBudget
from .retries import retry_verdict
from .trees import RunTree

log = structlog.get_logger(__name__)

OUTPUT_TAIL = 4000
_DRAIN_AFTER_CANCEL = 15.0


@dataclass
class _Active:
    run_id: int
    automation: str
    inbox: Inbox = field(default_factory=Inbox)
    agent: AgentRun | None = None
    task: asyncio.Task[None] | None = None
    status: RunStatus = RunStatus.RUNNING
    cancelled_by: str | None = None
    interrupted: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    # The inbox server is waiting for the next message (nothing half handled to lose).
    inbox_idle: bool = True
    inbox_closed: bool = False
    tree: RunTree | None = None  # its worktree, when it works in one
    started: asyncio.Event = field(default_factory=asyncio.Event)  # `started` is in the log
    budget: LogBudget = field(default_factory=LogBudget)  # what of its progress is stored


async def _ready_now() -> None:
    return None


class Executor:
    """Runs queued runs; the one owner of run state transitions while the daemon lives."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        catalog: Callable[[], Catalog],
        backends: Mapping[str, AgentBackend],
        max_runs: int,
        state: StateLayout,
        base_dir: Path,
        skill_env: Callable[[Skill], dict[str, str]] = lambda skill: {},
    ) -> None:
        self._store = store
        self._bus = bus
        self._catalog = catalog
        self._backends = backends
        self._admission = Admission(max_runs)
        self._state = state
        self._base_dir = base_dir
        self._skill_env = skill_env  # what the daemon's config grants a skill (e.g. GitHub)
        self._active: dict[int, _Active] = {}
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._accepting = True
        self._stopping = False
        self._started_cb: list[Callable[[int], None]] = []
        self._cleanups: set[asyncio.Task[None]] = set()  # worktree work after a run
        self._finished_cb: list[Callable[[str, RunStatus, float | None], None]] = []

    # -- public surface -------------------------------------------------------------------
    @property
    def active_ids(self) -> list[int]:
        """Ids of runs executing now."""
        return sorted(self._active)

    @property
    def waiting_ids(self) -> list[int]:
        """Ids of executing runs that wait for a person's decision on an approval."""
        return sorted(i for i, a in self._active.items() if a.status == RunStatus.WAITING)

    @property
    def paused_ids(self) -> list[int]:
        """Ids of executing runs a person paused."""
        return sorted(i for i, a in self._active.items() if a.status == RunStatus.PAUSED)

    @property
    def queued_ids(self) -> list[int]:
        """Ids of runs waiting for a slot, in start order."""
        return self._admission.ids()

    @property
    def max_runs(self) -> int:
        """Runs executing at once, across all automations."""
        return self._admission.max_runs

    def queue_reasons(self) -> dict[int, str]:
        """Why each queued run has not started yet, in the words of the setting that holds it."""
        running = {run_id: a.automation for run_id, a in self._active.items()}
        return self._admission.reasons(running, self._catalog(), utcnow())

    async def start(self) -> None:
        """Recover what a previous daemon left behind, then start taking runs."""
        await self._recover()
        self._pump_task = asyncio.create_task(self._pump_loop(), name="executor-pump")

    def enqueue(self, run: RunRow) -> None:
        """Queue a stored run for execution (once: a run queued or running here already is
        left as it is)."""
        assert run.id is not None
        if not self._accepting:
            return  # it stays queued in the store and starts with the next daemon
        if run.id in self._active:
            return
        if self._admission.add(run.id, run.automation, run.not_before):
            self._wake.set()

    async def steer(self, run_id: int, text: str, by: str, ref: str | None = None) -> None:
        """Deliver steering text to a running run."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Steer(text=text, by=by, ref=ref))

    async def pause(self, run_id: int, by: str) -> None:
        """Suspend a running run until `resume`."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Pause(by=by))

    async def resume(self, run_id: int, by: str) -> None:
        """Continue a paused run."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Resume(by=by))

    async def decide(
        self, run_id: int, approval_id: str | None, approved: bool, by: str, reason: str | None
    ) -> str:
        """Approve or deny a pending request (the oldest when `approval_id` is None)."""
        run_id = await self._current(run_id)
        active = self._require_active(run_id)
        pending = await self._store.call(self._store.approvals, run_id, "pending")
        if approval_id is None:
            if not pending:
                raise RunStateError(f"run {run_id} has no pending approval request")
            approval_id = pending[0].request_id
        elif approval_id not in {a.request_id for a in pending}:
            raise RunStateError(f"run {run_id} has no pending approval {approval_id!r}")
        active.inbox.put(Decision(approval_id=approval_id, approved=approved, by=by, reason=reason))
        return approval_id

    async def cancel(self, run_id: int, by: str, reason: str | None = None) -> None:
        """Cancel a queued or running run."""
        run_id = await self._current(run_id)
        if self._admission.remove(run_id):
            await self._emit(run_id, Message(text=f"cancelled by {by} before it started"))
            await self._finish(run_id, RunStatus.CANCELLED, f"cancelled by {by}", None)
            return
        self._require_active(run_id).inbox.put(Cancel(by=by, reason=reason))

    def on_started(self, callback: Callable[[int], None]) -> None:
        """Call `callback(run_id)` whenever a run starts executing (benchmarks, tests)."""
        self._started_cb.append(callback)

    def on_finished(self, callback: Callable[[str, RunStatus, float | None], None]) -> None:
        """Call `callback(automation, status, seconds)` when a run ends (metrics)."""
        self._finished_cb.append(callback)

    async def shutdown(self, grace: float) -> None:
        """Stop taking runs; give running ones `grace` seconds, then interrupt them."""
        self._accepting = False
        self._stopping = True
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        # A run waiting for a person has nothing to finish: interrupt it now, not after the grace.
        for active in list(self._active.values()):
            if active.status in (RunStatus.WAITING, RunStatus.PAUSED) and active.agent is not None:
                active.interrupted = True
                await active.agent.cancel()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            log.info("waiting for running runs", count=len(tasks), grace_s=grace)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for active in list(self._active.values()):
                active.interrupted = True
                if active.agent is not None:
                    await active.agent.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_DRAIN_AFTER_CANCEL + 5)
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=10)

    async def settle(self, timeout: float = 60) -> None:
        """Wait (bounded) until the runs executing now are over, with the workspace work that
        follows them (removing their worktrees, preparing the next run's spare)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            tasks = {a.task for a in self._active.values() if a.task is not None}
            tasks |= self._cleanups
            left = deadline - asyncio.get_running_loop().time()
            if not tasks or left <= 0:
                return
            await asyncio.wait(tasks, timeout=left)

    # -- internals ------------------------------------------------------------------------
    async def _current(self, run_id: int) -> int:
        """A run that is neither active nor queued hands over to its newest retry, so a reply
        or click meant for an attempt cut short by a restart reaches the attempt that runs."""
        if run_id in self._active or run_id in self._admission:
            return run_id
        current = await self._store.call(self._store.current_attempt, run_id)
        if current not in self._active and current not in self._admission:
            await self._store.call(self._store.get_run, current)  # no such run: RunNotFound
            raise RunStateError(f"run {current} is not running")
        return current

    def _require_active(self, run_id: int) -> _Active:
        active = self._active.get(run_id)
        if active is None:
            if run_id in self._admission:
                raise RunStateError(f"run {run_id} is queued and has not started yet")
            raise RunStateError(f"run {run_id} is not running")
        return active

    async def _emit(self, run_id: int, event: RunEvent) -> None:
        await self._bus.emit(run_id, event)

    async def _recover(self) -> None:
        stale = await self._store.call(
            self._store.list_runs,
            statuses=list(EXECUTING),
            limit=10_000,
            oldest_first=True,
        )
        finished: set[int] = set()
        for run in stale:
            assert run.id is not None
            # Its processes carry the folder they worked in: a worktree, or a plain folder.
            killed = await asyncio.to_thread(kill_orphans, *self._state.run_dirs(run.id))
            log.warning("run was left running by a previous daemon", run_id=run.id, killed=killed)
            journal = self._state.journal(run.id)
            # A script that went on and finished while no daemon listened left its outcome
            # in its journal: the run ends as the script said, and is not run again.
            said = None if killed else await asyncio.to_thread(recorded, journal)
            if said is None:
                await self._emit(
                    run.id,
                    Message(level="warning", text="the daemon stopped while this run was active"),
                )
                await self._finish(
                    run.id, RunStatus.INTERRUPTED, "the daemon stopped during the run", None
                )
            else:
                finished.add(run.id)
                await self._emit(
                    run.id,
                    Message(
                        level="warning",
                        text="the daemon stopped during this run; the script went on and "
                        f"finished (exit code {said.code}, {said.lines} lines of output): "
                        "its outcome is recorded from its journal",
                    ),
                )
                for artifact in said.artifacts:
                    await self._emit(run.id, artifact)
                await self._finish(run.id, said.finished.status, said.finished.summary, None)
            await asyncio.to_thread(discard_journal, journal)
        salvaged = await workspace.salvage_all(self._state.worktrees, finished=finished)
        await workspace.discard_spares(self._state.spares)
        if salvaged:
            log.warning("removed worktrees left by a previous daemon", count=len(salvaged))
        queued = await self._store.call(
            self._store.list_runs, statuses=[RunStatus.QUEUED], limit=100_000, oldest_first=True
        )
        for run in queued:
            self.enqueue(run)

    async def _pump_loop(self) -> None:
        while True:
            timeout = self._start_ready()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    def _start_ready(self) -> float | None:
        """Start whatever fits; return seconds until a delayed (retry) run becomes due."""
        running = [a.automation for a in self._active.values()]
        taken, next_due = self._admission.admit(running, self._catalog(), utcnow())
        for q in taken:
            active = _Active(q.run_id, q.automation)
            self._active[q.run_id] = active
            active.task = asyncio.create_task(self._execute(active), name=f"run-{q.run_id}")
        return next_due

    async def _execute(self, active: _Active) -> None:
        run_id = active.run_id
        try:
            try:
                status, summary, automation = await self._run(active)
            finally:
                await self._close_tree(active)
        except _NotQueued:
            log.info("run not started: it is not queued any more", run_id=run_id)
            self._active.pop(run_id, None)
            self._wake.set()
            return
        except Exception as exc:  # the executor must survive any bug in one run
            log.exception("run crashed", run_id=run_id)
            status, summary, automation = RunStatus.FAILED, f"internal error: {exc}", None
        try:
            await self._finish(run_id, status, summary, automation)
        finally:
            self._active.pop(run_id, None)
            self._wake.set()
            cleanup = asyncio.create_task(self._after_run(active))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

    async def _after_run(self, active: _Active) -> None:
        # What the run started and left behind — a `setsid` grandchild outside its process
        # group, a daemonised server — still carries the run's marker: it ends with the run.
        # After the run is reported finished: the /proc pass costs a few ms nobody waits on.
        killed = await asyncio.to_thread(kill_orphans, *self._state.run_dirs(active.run_id))
        if killed:
            log.warning("killed processes the run left behind", run_id=active.run_id, pids=killed)
        await asyncio.to_thread(discard_journal, self._state.journal(active.run_id))
        if active.tree is not None:
            await active.tree.clean_up(spare=not self._stopping)

    async def _set_status(self, active: _Active, status: RunStatus) -> None:
        if active.status == status:
            return
        active.status = status
        await self._store.call(self._store.update_run, active.run_id, status=status.value)
        await self._emit(active.run_id, StatusChanged(status=status))

    async def _run(self, active: _Active) -> tuple[RunStatus, str, Automation | None]:
        run_id = active.run_id
        catalog = self._catalog()
        automation = catalog.automations.get(active.automation)
        skill = catalog.skills.get(automation.skill) if automation is not None else None
        backend = self._backends.get(automation.agent.backend) if automation is not None else None
        repo = self._local_repository(automation) if automation is not None else None
        # One store round trip: the run taken (marked running), with the event that started
        # it; a run that is not queued any more is not this daemon's to run.
        taken = await self._store.call(self._store.start_run, run_id, utcnow())
        if taken is None:
            raise _NotQueued(run_id)
        run, found = taken
        if (
            automation is not None
            and skill is not None
            and backend is not None
            and repo is not None
            and automation.isolated()
        ):
            # A local repository's worktree is started next: everything below (the started
            # event, the event's payload, the backend's start) happens meanwhile, and the
            # agent's first command waits for it.
            self._start_tree(active, repo, automation, automation.workspace.base_branch)
        if automation is None:
            return RunStatus.FAILED, f"automation {run.automation!r} is no longer loaded", None
        # The backend starts while `started` is being stored: the agent's first model call
        # need not wait for it, and its events wait in its own queue until `_drive` logs
        # them, after `started`.
        announced = asyncio.create_task(self._announce(active, automation, run))
        try:
            launched = await self._launch(
                active, automation, skill, backend, repo, run, found, catalog
            )
        finally:
            try:
                await announced
            except BaseException:
                if active.agent is not None:
                    await active.agent.cancel()
                raise
        if launched is not None:
            return (*launched, automation)
        assert active.agent is not None
        status, summary = await self._drive(active, active.agent, automation)
        # A run that succeeded without ever needing its folder still fails if it was not made.
        if (
            active.tree is not None
            and status == RunStatus.SUCCEEDED
            and (error := await active.tree.failure()) is not None
        ):
            return RunStatus.FAILED, f"cannot make the workspace: {error}", automation
        return status, summary, automation

    async def _announce(self, active: _Active, automation: Automation, run: RunRow) -> None:
        """The run's `started`, the first event of its log."""
        await self._emit(
            active.run_id,
            Started(automation=automation.name, trigger=run.trigger, attempt=run.attempt),
        )
        active.started.set()
        for cb in self._started_cb:
            cb(active.run_id)

    async def _launch(
        self,
        active: _Active,
        automation: Automation,
        skill: Skill | None,
        backend: AgentBackend | None,
        repo: Path | None,
        run: RunRow,
        found: EventRow | None,
        catalog: Catalog,
    ) -> tuple[RunStatus, str] | None:
        """Start the run's agent (`active.agent`); if it cannot start, the run's end and why."""
        run_id = active.run_id
        if skill is None or backend is None:
            missing = (
                f"skill {automation.skill!r}"
                if skill is None
                else f"backend {automation.agent.backend!r}"
            )
            return RunStatus.FAILED, f"{missing} is not available"
        try:
            inputs = skill.resolve_inputs(run.inputs)
            env = self._skill_env(skill)
            env.update({k: v.resolve() for k, v in automation.env.items()})
        except (ValueError, NightshiftError) as exc:
            return RunStatus.FAILED, f"cannot start: {exc}"
        event: dict[str, Any] = {}
        if found is not None:
            event = {
                "id": found.id,
                "source": found.source,
                "type": found.type,
                "received_at": found.received_at.isoformat(),
                "payload": found.payload,
            }
        ready = _ready_now
        if automation.isolated():
            if active.tree is None:  # a clone URL: a worktree of the cached mirror, once fetched
                try:
                    repo = await workspace.mirror(
                        automation.workspace.repository, self._state.mirrors
                    )
                except NightshiftError as exc:
                    return RunStatus.FAILED, f"cannot make the workspace: {exc}"
                base = f"origin/{automation.workspace.base_branch or 'HEAD'}"
                self._start_tree(active, repo, automation, base)
            # The worktree is made while the backend starts (and a model thinks about its
            # first step); every backend awaits `ctx.ready()` before it touches the folder.
            assert active.tree is not None
            workdir, ready = active.tree.path, active.tree.ready
        else:
            workdir = self._state.runs / str(run_id)
            await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        ctx = RunContext(
            run_id=run_id,
            attempt=run.attempt,
            automation=automation,
            skill=skill,
            inputs=inputs,
            event=event,
            workdir=workdir,
            env=env,
            repository=repo,
            skills=tuple(catalog.skills.values()),
            ready=ready,
            journal=self._state.journal(run_id),
        )
        try:
            active.agent = await backend.start(ctx)
        except NightshiftError as exc:
            return RunStatus.FAILED, str(exc)
        return None

    def _start_tree(
        self, active: _Active, repo: Path, automation: Automation, base: str | None
    ) -> None:
        """Start making the run's worktree; `_close_tree` ends it whatever ends the run."""
        active.tree = RunTree(active.run_id, repo, base, self._state, self._emit, active.started)
        active.tree.start(automation.name)

    async def _close_tree(self, active: _Active) -> None:
        if active.tree is not None:
            automation = self._catalog().automations.get(active.automation)
            await active.tree.close(automation.workspace.keep if automation else False)

    def _local_repository(self, automation: Automation) -> Path | None:
        repo = automation.workspace.repository
        if workspace.is_url(repo):
            return None  # a clone URL: workspaces (worktrees of a mirror) handle those
        path = Path(repo).expanduser()
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    async def _drive(
        self, active: _Active, agent: AgentRun, automation: Automation
    ) -> tuple[RunStatus, str]:
        inbox_task = asyncio.create_task(self._serve_inbox(active, agent))
        timeout = automation.policies.timeout.total_seconds()
        finished: Finished | None = None
        timed_out = False
        stream = agent.events()
        try:
            try:
                async with asyncio.timeout(timeout):
                    finished = await self._consume(active, stream)
            except TimeoutError:
                timed_out = True
                await agent.cancel()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DRAIN_AFTER_CANCEL):
                        await self._consume(active, stream)
        finally:
            for timer in active.timers:
                timer.cancel()
            # A message in hand is finished first: an agent that took a steer and finished at
            # once must not lose the record that it took it (the "taken" acknowledgement).
            active.inbox_closed = True
            if active.inbox_idle:
                inbox_task.cancel()
            await asyncio.wait({inbox_task}, timeout=_DRAIN_AFTER_CANCEL)
            inbox_task.cancel()
            if inbox_task.done() and not inbox_task.cancelled() and inbox_task.exception():
                log.warning(
                    "run inbox failed", run_id=active.run_id, error=str(inbox_task.exception())
                )
        summary = active.budget.summary()
        if summary is not None:
            await self._emit(active.run_id, summary)
        if timed_out:
            return (
                RunStatus.TIMED_OUT,
                f"timed out after {format_duration(automation.policies.timeout)}",
            )
        if active.interrupted:
            return RunStatus.INTERRUPTED, "the daemon was stopped"
        if active.cancelled_by is not None:
            return RunStatus.CANCELLED, f"cancelled by {active.cancelled_by}"
        if finished is None:
            return RunStatus.FAILED, "the agent ended without a result"
        return finished.status, finished.summary

    async def _consume(self, active: _Active, stream: Any) -> Finished | None:
        async for event in stream:
            if isinstance(event, Finished):
                return event
            if isinstance(event, Command) and len(event.output_tail) > OUTPUT_TAIL:
                event = event.model_copy(
                    update={"output_tail": "[…truncated]\n" + event.output_tail[-OUTPUT_TAIL:]}
                )
            if isinstance(event, ApprovalRequest):
                if event.expires_at is None:
                    ttl = self._catalog().automations[active.automation].policies.approval_ttl
                    event = event.model_copy(update={"expires_at": utcnow() + ttl})
                assert event.expires_at is not None
                try:
                    await self._store.call(
                        self._store.create_approval,
                        active.run_id,
                        event.id,
                        event.action,
                        event.description,
                        event.expires_at,
                    )
                except NightshiftError as exc:
                    await self._emit(active.run_id, Message(level="warning", text=str(exc)))
                    continue
                await self._emit(active.run_id, event)
                await self._set_status(active, RunStatus.WAITING)
                self._expire_later(active, event.id, event.expires_at)
                continue
            kept = active.budget.admit(event)
            if kept is not None:
                await self._emit(active.run_id, kept)
        return None

    def _expire_later(self, active: _Active, approval_id: str, at: datetime) -> None:
        """When the request's time is up, an expiry enters the inbox like any decision."""
        delay = max((at - utcnow()).total_seconds(), 0.0)
        expiry = Decision(
            approval_id=approval_id,
            approved=False,
            by="nightshift",
            reason=f"expired at {at:%Y-%m-%d %H:%M} UTC with no decision",
            expired=True,
        )
        handle = asyncio.get_running_loop().call_later(delay, active.inbox.put, expiry)
        active.timers.append(handle)

    async def _serve_inbox(self, active: _Active, agent: AgentRun) -> None:
        while not active.inbox_closed:
            active.inbox_idle = True
            msg = await active.inbox.get()
            active.inbox_idle = False
            if isinstance(msg, Steer):
                await agent.steer(msg.text, msg.by)
                # Recorded once the agent has it: reporters acknowledge "taken" from this.
                await self._emit(
                    active.run_id, SteerReceived(text=msg.text, by=msg.by, ref=msg.ref)
                )
            elif isinstance(msg, Pause | Resume):
                pausing = isinstance(msg, Pause)
                await (agent.pause() if pausing else agent.resume())
                await self._emit(
                    active.run_id, Message(text=f"{'paused' if pausing else 'resumed'} by {msg.by}")
                )
                await self._set_status(
                    active, await self._unpaused(active) if not pausing else RunStatus.PAUSED
                )
            elif isinstance(msg, Decision):
                outcome = "expired" if msg.expired else "approved" if msg.approved else "denied"
                row = await self._store.call(
                    self._store.decide_approval,
                    active.run_id,
                    msg.approval_id,
                    outcome,
                    msg.by,
                    msg.reason,
                )
                if row is None:
                    continue  # decided already: a second click changes nothing
                await self._emit(
                    active.run_id,
                    ApprovalDecision(
                        id=msg.approval_id, approved=msg.approved, by=msg.by, reason=msg.reason
                    ),
                )
                pending = await self._store.call(self._store.approvals, active.run_id, "pending")
                if not pending and active.status == RunStatus.WAITING:
                    await self._set_status(active, RunStatus.RUNNING)
                await agent.decide(msg.approval_id, msg.approved, msg.reason)
            elif isinstance(msg, Cancel):
                active.cancelled_by = msg.by
                note = f"cancel requested by {msg.by}" + (f": {msg.reason}" if msg.reason else "")
                await self._emit(active.run_id, Message(text=note))
                await agent.cancel()

    async def _unpaused(self, active: _Active) -> RunStatus:
        """What a resumed run is: waiting again when a request is still open."""
        pending = await self._store.call(self._store.approvals, active.run_id, "pending")
        return RunStatus.WAITING if pending else RunStatus.RUNNING

    async def _finish(
        self, run_id: int, status: RunStatus, summary: str, automation: Automation | None
    ) -> None:
        run = await self._store.call(self._store.end_run, run_id, status.value, summary, utcnow())
        await self._emit(run_id, Finished(status=status, summary=summary))
        log.info("run finished", run_id=run_id, status=status.value, summary=summary[:200])
        took = (
            (run.finished_at - run.started_at).total_seconds()
            if run.started_at and run.finished_at
            else None
        )
        for cb in self._finished_cb:
            cb(run.automation, status, took)
        if automation is None:
            automation = self._catalog().automations.get(run.automation)
        if automation is not None:
            await self._maybe_retry(run, automation, status)

    async def _maybe_retry(self, run: RunRow, automation: Automation, status: RunStatus) -> None:
        assert run.id is not None
        if status not in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED):
            return
        chain = await self._store.call(self._store.attempts, run.id)
        verdict = retry_verdict(chain, automation.policies, status)
        if verdict.why is not None:
            await self._emit(run.id, Message(level="warning", text=verdict.why))
        if (delay := verdict.delay) is None:
            return
        new = await self._store.call(
            self._store.create_run,
            NewRun(
                automation=run.automation,
                trigger=run.trigger,
                inputs=run.inputs,
                attempt=run.attempt + 1,
                retry_of=run.id,
                not_before=utcnow() + delay if delay else None,
            ),
            run.event_id,
        )
        assert new.id is not None
        when = f"in {format_duration(delay)}" if delay else "now"
        await self._emit(run.id, Message(text=f"retrying as run {new.id} ({when})"))
        self.enqueue(new)


class _NotQueued(Exception):
    """The run is not queued any more (another replica took it, or it ended meanwhile)."""
