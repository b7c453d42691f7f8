"""The in-process executor: recovers what a previous daemon left (`recovery`), starts queued
runs within the global and per-automation limits (`admission`), starts each one's agent
(`launch`) and hands it to the object that owns its life while it executes (`lifecycle`),
then records its end and whether it runs again (`retries`).

Replies reach a running run only through its `Inbox`; its lifecycle serves them to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path

import structlog

from ..agents import (
    AgentBackend,
    discard_journal,
    kill_orphans,
)
from ..bus import EventBus
from ..config import StateLayout
from ..durations import format_duration
from ..loader import Catalog
from ..runs import (
    Finished,
    Message,
    RunEvent,
    RunStatus,
    Started,
)
from ..spec import Automation, Skill
from ..store import NewRun, RunRow, Store, utcnow
from ..workspace import branch_name
from .admission import Admission
from .launch import Launcher, local_repository
from .lifecycle import DRAIN_AFTER_CANCEL, RunLifecycle
from .messages import Messages
from .recovery import drop_lost, recover, recover_gone
from .retries import retry_verdict

log = structlog.get_logger(__name__)


class Executor(Messages):
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
        owner: str | None = None,
        live: Callable[[], Awaitable[set[str]]] | None = None,
        beating: Callable[[], bool] | None = None,
    ) -> None:
        """`owner`: this daemon's replica id, recorded on every run it takes; `live`: the ids
        of the replicas alive now, whose runs start-up recovery leaves alone; `beating`:
        whether this replica's heartbeat is fresh — when it is not (the process stalled, the
        database was away), a run is checked to be still this replica's before anything more
        of it is reported."""
        self._store = store
        self._owner = owner
        self._live = live
        self._beating = beating
        self._bus = bus
        self._catalog = catalog
        self._backends = backends
        self._admission = Admission(max_runs)
        self._state = state
        self._base_dir = base_dir
        self._launcher = Launcher(state, skill_env)
        self._active: dict[int, RunLifecycle] = {}
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._accepting = True
        self._stopping = False
        self._started_cb: list[Callable[[int], None]] = []
        self._cleanups: set[asyncio.Task[None]] = set()  # worktree work after a run
        self._finished_cb: list[Callable[[str, RunStatus, float | None], None]] = []
        self.taken_over = 0  # runs taken over from silent replicas (per-replica metrics)
        self.lost_here = 0  # runs other replicas took over from this one

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

    async def live_diff(self, run_id: int) -> str | None:
        """An executing run's diff as it stands now; None when it has no worktree here."""
        active = self._active.get(run_id)
        if active is None or active.tree is None:
            return None
        return await active.tree.diff()

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
            if active.status in (RunStatus.WAITING, RunStatus.PAUSED):
                await active.interrupt()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            log.info("waiting for running runs", count=len(tasks), grace_s=grace)
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for active in list(self._active.values()):
                await active.interrupt()
            if pending:
                await asyncio.wait(pending, timeout=DRAIN_AFTER_CANCEL + 5)
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
    async def _emit(self, run_id: int, event: RunEvent) -> None:
        active = self._active.get(run_id)
        if active is not None and not active.lost and self._beating and not self._beating():
            await self._check_held(active)
        if active is not None and active.lost:
            # Another replica owns the run now: this one reports nothing more of it.
            log.info("not reported: the run belongs to another replica now", run_id=run_id)
            return
        await self._bus.emit(run_id, event)

    async def _recover(self) -> None:
        async def finish(run_id: int, status: RunStatus, summary: str) -> None:
            await self._finish(run_id, status, summary, None)

        for run in await recover(self._store, self._state, self._emit, finish, live=self._live):
            self.enqueue(run)

    def _lifecycle(self, run_id: int, automation: str) -> RunLifecycle:
        return RunLifecycle(
            run_id, automation, store=self._store, emit=self._emit, deadline=self._hold_deadline
        )

    async def _hold_deadline(self, run_id: int, approval_id: str, at: datetime) -> bool:
        """Whether the engine keeps an approval's deadline (this one does not: the run's own
        timer does)."""
        return False

    async def problem(self) -> str | None:
        """Why this engine cannot take runs now (`/readyz`); None when it can."""
        return None

    async def execute_now(self, run_id: int) -> str:
        """Execute a queued run at once, outside this executor's admission (for an engine that
        admits runs itself), and wait for its end; its final status."""
        run = await self._store.call(self._store.get_run, run_id)
        active = self._lifecycle(run_id, run.automation)
        self._active[run_id] = active
        active.task = asyncio.create_task(self._execute(active), name=f"run-{run_id}")
        await asyncio.shield(active.task)  # an engine's cancellation ends the run, not this task
        return (await self._store.call(self._store.get_run, run_id)).status

    async def _check_held(self, active: RunLifecycle) -> None:
        """After a silence of this replica: a run another replica took over meanwhile is
        marked lost here and its agent stopped, before it says anything more."""
        owner = await self._store.call(self._store.owner_of, active.run_id)
        if owner is None or owner == self._owner:
            return
        log.warning("a run of this replica was taken over", run_id=active.run_id, by=owner)
        active.lost = True
        self.lost_here += 1
        if active.agent is not None:  # stopped beside the drive that is emitting now
            task = asyncio.create_task(active.agent.cancel(), name=f"drop-{active.run_id}")
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def fence(self) -> list[int]:
        """Freeze the agents of the runs executing here: this replica cannot reach the
        database, so it cannot tell whether another has taken them over — and an agent of a
        lost run must not act (push, write to GitHub) meanwhile. The ids frozen."""
        frozen = []
        for run_id, active in self._active.items():
            if active.agent is None or active.lost or active.fenced:
                continue
            if active.status == RunStatus.PAUSED:
                continue  # a person paused it: it stays so, and is theirs to resume
            active.fenced = True
            await active.agent.pause()
            frozen.append(run_id)
        return frozen

    async def unfence(self) -> list[int]:
        """Thaw the agents `fence` froze, once `drop_lost` has stopped those of runs taken
        over meanwhile. The ids thawed."""
        thawed = []
        for run_id, active in self._active.items():
            if not active.fenced:
                continue
            active.fenced = False
            if not active.lost and active.agent is not None:
                await active.agent.resume()
                thawed.append(run_id)
        return thawed

    async def drop_lost(self) -> list[int]:
        """Stop, without a word, the runs executing here that another replica took over (see
        `recovery.drop_lost`). The ids dropped."""
        if self._owner is None:
            return []
        dropped = await drop_lost(self._store, self._active, self._owner)
        self.lost_here += len(dropped)
        return dropped

    async def recover_gone(self) -> list[int]:
        """End the runs of replicas that stopped beating (once, across replicas): each ends
        `interrupted` and runs again as its policy says, here. The ids recovered."""
        if self._owner is None or self._live is None:
            return []

        async def finish(run_id: int, status: RunStatus, summary: str) -> None:
            await self._finish(run_id, status, summary, None)

        taken = await recover_gone(
            self._store,
            self._state,
            self._emit,
            finish,
            me=self._owner,
            live=await self._live(),
            executing_here=set(self._active),
            branch_of=self._branch_of,
        )
        self.taken_over += len(taken)
        return taken

    def _branch_of(self, run: RunRow) -> str | None:
        """The branch a run's attempt works on, when its automation works in a worktree."""
        automation = self._catalog().automations.get(run.automation)
        if automation is None or run.id is None or not automation.isolated():
            return None
        return branch_name(run.automation, run.id)

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
            active = self._lifecycle(q.run_id, q.automation)
            self._active[q.run_id] = active
            active.task = asyncio.create_task(self._execute(active), name=f"run-{q.run_id}")
        return next_due

    async def _execute(self, active: RunLifecycle) -> None:
        run_id = active.run_id
        try:
            try:
                status, summary, automation = await self._run(active)
            finally:
                loaded = self._catalog().automations.get(active.automation)
                await active.close_tree(keep=loaded.workspace.keep if loaded else False)
        except _NotQueued:
            log.info("run not started: it is not queued any more", run_id=run_id)
            self._active.pop(run_id, None)
            self._wake.set()
            return
        except Exception as exc:  # the executor must survive any bug in one run
            log.exception("run crashed", run_id=run_id)
            status, summary, automation = RunStatus.FAILED, f"internal error: {exc}", None
        try:
            if not active.lost:  # a lost run's end is its new owner's to record
                await self._finish(run_id, status, summary, automation)
        finally:
            self._active.pop(run_id, None)
            self._wake.set()
            cleanup = asyncio.create_task(self._after_run(active))
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)

    async def _after_run(self, active: RunLifecycle) -> None:
        # What the run started and left behind — a `setsid` grandchild outside its process
        # group, a daemonised server — still carries the run's marker: it ends with the run.
        # After the run is reported finished: the /proc pass costs a few ms nobody waits on.
        killed = await asyncio.to_thread(kill_orphans, *self._state.run_dirs(active.run_id))
        if killed:
            log.warning("killed processes the run left behind", run_id=active.run_id, pids=killed)
        await asyncio.to_thread(discard_journal, self._state.journal(active.run_id))
        if active.tree is not None:
            await active.tree.clean_up(spare=not self._stopping)

    async def _run(self, active: RunLifecycle) -> tuple[RunStatus, str, Automation | None]:
        run_id = active.run_id
        catalog = self._catalog()
        automation = catalog.automations.get(active.automation)
        skill = catalog.skills.get(automation.skill) if automation is not None else None
        backend = self._backends.get(automation.agent.backend) if automation is not None else None
        repo = local_repository(automation, self._base_dir) if automation is not None else None
        # One store round trip: the run taken (marked running), with the event that started
        # it; a run that is not queued any more is not this daemon's to run.
        taken = await self._store.call(self._store.start_run, run_id, utcnow(), self._owner)
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
            active.start_tree(repo, automation.name, automation.workspace.base_branch, self._state)
        if automation is None:
            return RunStatus.FAILED, f"automation {run.automation!r} is no longer loaded", None
        # The backend starts while `started` is being stored: the agent's first model call
        # need not wait for it, and its events wait in its own queue until `_drive` logs
        # them, after `started`.
        announced = asyncio.create_task(self._announce(active, automation, run))
        try:
            launched = await self._launcher.launch(
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
        status, summary = await active.drive(active.agent, automation)
        # A run that succeeded without ever needing its folder still fails if it was not made.
        if (
            active.tree is not None
            and status == RunStatus.SUCCEEDED
            and (error := await active.tree.failure()) is not None
        ):
            return RunStatus.FAILED, f"cannot make the workspace: {error}", automation
        return status, summary, automation

    async def _announce(self, active: RunLifecycle, automation: Automation, run: RunRow) -> None:
        """The run's `started`, the first event of its log."""
        await self._emit(
            active.run_id,
            Started(automation=automation.name, trigger=run.trigger, attempt=run.attempt),
        )
        active.started.set()
        for cb in self._started_cb:
            cb(active.run_id)

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
            self._store.create_run_once,
            NewRun(
                automation=run.automation,
                trigger=run.trigger,
                inputs=run.inputs,
                attempt=run.attempt + 1,
                retry_of=run.id,
                not_before=utcnow() + delay if delay else None,
                # The same thing asked for by the same people: its key (a conversation's,
                # a dedup key) and its trust go with it.
                key=run.key,
                untrusted=run.untrusted,
            ),
            run.event_id,
        )
        if new is None:  # a conversation's: a person started its next run meanwhile
            text = "not retried: the conversation's next run has started"
            await self._emit(run.id, Message(level="warning", text=text))
            return
        assert new.id is not None
        when = f"in {format_duration(delay)}" if delay else "now"
        await self._emit(run.id, Message(text=f"retrying as run {new.id} ({when})"))
        self.enqueue(new)


class _NotQueued(Exception):
    """The run is not queued any more (another replica took it, or it ended meanwhile)."""
