"""The Temporal engine: each run is a workflow (`run_workflow.RunWorkflow`, id
`<task queue>-run-<id>`, so a run starts once however often it is submitted), executed as one
heartbeating activity on whichever replica takes it — through the very code path of the
local engine (`Executor.execute_now`: workspace, agent, events to the store, reporters).
Steering, decisions, pause, resume and cancel may arrive at any replica: they become signals
on the run's workflow, which delivers each to the replica executing the run; an approval's
deadline is a timer of that workflow. A workflow whose history grows long continues as new
while its run goes on: the replica is told first, and keeps the run for the new workflow
run's attachment."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from ..config import EngineConfig
from ..errors import EngineUnavailable, NightshiftError, RunStateError
from ..executor import Executor, expiry, left_on
from ..runs import EXECUTING, Message, RunStatus
from ..store import RunRow
from .run_workflow import ATTACH, DELIVER, EXECUTE, LOST, RunWorkflow

log = structlog.get_logger(__name__)

_BEAT = 5.0  # seconds between an executing run's heartbeats, at most (the timeout is 30 s)
DRAIN = 15.0  # seconds a cancelled run has to end


def workflow_id(task_queue: str, run_id: int) -> str:
    """The run's workflow id: the install (its task queue) and the run, so two installs on
    one Temporal namespace never share one."""
    return f"{task_queue}-run-{run_id}"


class TemporalEngine(Executor):
    """An executor whose runs are admitted, routed and recovered by Temporal."""

    def __init__(self, *, engine: EngineConfig, replica: str, **executor: Any) -> None:
        super().__init__(**executor)
        self._config = engine
        self._replica_queue = f"{engine.task_queue}.{replica.replace(':', '-')}"
        self._client: Client | None = None
        self._workers: list[Worker] = []
        self._running: list[asyncio.Task[None]] = []
        self._submits: set[asyncio.Task[None]] = set()
        # Which workflow run holds each run executing here; a run whose workflow is moving
        # to a new workflow run (continued as new) is held by none until it attaches.
        self._holders: dict[int, str | None] = {}
        # A run moving: the workflow run it leaves, and whether the new one has attached.
        self._moves: dict[int, tuple[str | None, asyncio.Event]] = {}

    @property
    def client(self) -> Client:
        """The Temporal client (once started)."""
        if self._client is None:
            raise NightshiftError("the Temporal engine has not started")
        return self._client

    async def start(self) -> None:
        """Connect, serve the run workflows and this replica's deliveries, then recover."""
        try:
            async with asyncio.timeout(10):
                self._client = await Client.connect(
                    self._config.address, namespace=self._config.namespace
                )
        except (TimeoutError, RuntimeError, RPCError) as exc:
            raise NightshiftError(
                f"cannot reach Temporal at {self._config.address} "
                f"(engine.address): {str(exc).splitlines()[0] if str(exc) else 'timed out'}"
            ) from None

        @activity.defn(name=EXECUTE)
        async def execute(run_id: int) -> str:
            started_by = activity.info().workflow_id
            assert started_by is not None  # always a workflow's activity here
            handle = activity.client().get_workflow_handle(started_by)
            await handle.signal(RunWorkflow.running_on, self._replica_queue)
            task = asyncio.create_task(self.execute_now(run_id))
            return await self._hold(run_id, task)

        @activity.defn(name=ATTACH)
        async def attach(run_id: int) -> str:
            move = self._moves.pop(run_id, None)
            if move is not None:
                move[1].set()
            active = self._active.get(run_id)
            if active is None or active.task is None or active.lost:
                self._holders.pop(run_id, None)
                run = await self._store.call(self._store.get_run, run_id)
                if run.finished_at is not None:
                    return run.status  # it ended while its workflow moved
                raise ApplicationError(
                    f"run {run_id} does not execute on this replica", non_retryable=True
                )
            return await self._hold(run_id, active.task)

        @activity.defn(name=DELIVER)
        async def deliver(run_id: int, message: dict[str, Any]) -> None:
            await self._deliver_here(run_id, message)

        @activity.defn(name=LOST)
        async def lost(run_id: int) -> None:
            await self._recover_lost(run_id)

        shared = Worker(
            self._client,
            task_queue=self._config.task_queue,
            workflows=[RunWorkflow],
            activities=[execute, lost],
            max_concurrent_activities=self.max_runs,
            # A workflow cancelled in Temporal reaches its run at the next heartbeat sent.
            max_heartbeat_throttle_interval=timedelta(seconds=_BEAT),
            # A run's workflow task waits for the replica that ran its last one this long, no
            # more: when that replica died, its lost run is handled elsewhere at once.
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
            # Few polls outstanding: a replica that freezes holds at most one activity task
            # it cannot start (each costs a heartbeat timeout and an interrupted attempt).
            max_concurrent_activity_task_polls=1,
            max_concurrent_workflow_task_polls=2,  # the least with a sticky queue
        )
        own = Worker(
            self._client,
            task_queue=self._replica_queue,
            activities=[deliver, attach],
            # Every run here may be held by an attachment, and messages still get through.
            max_concurrent_activities=self.max_runs + 16,
            max_heartbeat_throttle_interval=timedelta(seconds=_BEAT),
        )
        self._workers = [shared, own]
        self._running = [
            asyncio.create_task(w.run(), name="temporal worker") for w in self._workers
        ]
        await super().start()

    async def problem(self) -> str | None:
        """Why Temporal cannot be reached now; None when its frontend answers."""
        if self._client is None:
            return "not connected to Temporal yet"
        try:
            async with asyncio.timeout(2):
                healthy = await self._client.service_client.check_health()
        except (TimeoutError, RPCError) as exc:
            return f"Temporal at {self._config.address} does not answer: {exc or 'timed out'}"
        return None if healthy else f"Temporal at {self._config.address} is not serving"

    async def shutdown(self, grace: float) -> None:
        """Finish or interrupt the runs executing here, then stop serving."""
        await super().shutdown(grace)
        for worker in self._workers:
            with contextlib.suppress(Exception):
                await worker.shutdown()
        for task in self._running:
            task.cancel()

    # -- admission ------------------------------------------------------------------------
    def enqueue(self, run: RunRow) -> None:
        """Submit a stored run as its workflow (once: a workflow of that id is not started
        again)."""
        assert run.id is not None
        task = asyncio.create_task(self._submit(run.id), name=f"submit-{run.id}")
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def _submit(self, run_id: int) -> None:
        try:
            await self.client.start_workflow(
                RunWorkflow.run,
                args=[
                    run_id,
                    self._config.heartbeat_timeout.total_seconds(),
                    self._config.history_events,
                ],
                id=workflow_id(self._config.task_queue, run_id),
                task_queue=self._config.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # Its tasks take milliseconds: one handed to a replica that froze is given to
                # another soon, not after the default ten seconds.
                task_timeout=timedelta(seconds=2),
            )
        except WorkflowAlreadyStartedError:
            pass  # submitted before (a redelivery, a restart): it runs once
        except (RPCError, NightshiftError) as exc:
            log.error("run not submitted to Temporal", run_id=run_id, error=str(exc))

    # -- messages, from any replica -------------------------------------------------------
    async def _executing(self, run_id: int) -> int:
        """The run's current attempt, which must be executing (anywhere)."""
        current = await self._store.call(self._store.current_attempt, run_id)
        run = await self._store.call(self._store.get_run, current)  # RunNotFound
        if RunStatus(run.status) not in EXECUTING:
            raise RunStateError(f"run {current} is not running")
        return current

    def handle(self, run_id: int) -> WorkflowHandle[Any, Any]:
        """The run's workflow."""
        return self._handle(run_id)

    def _handle(self, run_id: int) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id(self._config.task_queue, run_id))

    async def _send(self, run_id: int, message: dict[str, Any]) -> None:
        try:
            await self._handle(run_id).signal(RunWorkflow.message, message)
        except RPCError as exc:
            raise EngineUnavailable(
                f"Temporal at {self._config.address} did not take the message for run "
                f"{run_id}: {exc}; try again"
            ) from None

    async def steer(self, run_id: int, text: str, by: str, ref: str | None = None) -> None:
        run_id = await self._executing(run_id)
        await self._send(run_id, {"kind": "steer", "text": text, "by": by, "ref": ref})

    async def pause(self, run_id: int, by: str) -> None:
        await self._send(await self._executing(run_id), {"kind": "pause", "by": by})

    async def resume(self, run_id: int, by: str) -> None:
        await self._send(await self._executing(run_id), {"kind": "resume", "by": by})

    async def decide(
        self, run_id: int, approval_id: str | None, approved: bool, by: str, reason: str | None
    ) -> str:
        run_id = await self._executing(run_id)
        approval_id = await self._pending_approval(run_id, approval_id)
        message = {
            "kind": "decide",
            "approval_id": approval_id,
            "approved": approved,
            "by": by,
            "reason": reason,
        }
        await self._send(run_id, message)
        return approval_id

    async def cancel(self, run_id: int, by: str, reason: str | None = None) -> None:
        current = await self._store.call(self._store.current_attempt, run_id)
        run = await self._store.call(self._store.get_run, current)
        if run.status == RunStatus.QUEUED:
            with contextlib.suppress(RPCError):
                await self._handle(current).terminate(f"cancelled by {by}")
            await self._emit(current, Message(text=f"cancelled by {by} before it started"))
            await self._finish(current, RunStatus.CANCELLED, f"cancelled by {by}", None)
            return
        await self._executing(current)
        await self._send(current, {"kind": "cancel", "by": by, "reason": reason})

    async def _hold_deadline(self, run_id: int, approval_id: str, at: datetime) -> bool:
        """An approval's deadline becomes a timer of the run's workflow: it holds wherever
        the run goes, and its expiry comes back as a message like any decision."""
        try:
            await self._handle(run_id).signal(
                RunWorkflow.approval_waiting, args=[approval_id, at.isoformat()]
            )
        except RPCError as exc:
            log.warning("approval deadline kept here", run_id=run_id, error=str(exc))
            return False
        return True

    async def _hold(self, run_id: int, task: asyncio.Future[Any]) -> str:
        """Hold the run executing here for the workflow run of this activity, beating, until
        it ends (its status)."""
        holder = activity.info().workflow_run_id
        self._holders[run_id] = holder
        # Beats well inside the timeout: a busy event loop must not look like a dead one.
        beat = min(_BEAT, self._config.heartbeat_timeout.total_seconds() / 4)
        try:
            while not task.done():
                activity.heartbeat()
                await asyncio.wait({task}, timeout=beat)
        except asyncio.CancelledError:
            await self._activity_cancelled(run_id, holder, task)
            raise
        finally:
            if task.done():  # over here: nothing holds it any more
                self._holders.pop(run_id, None)
                self._moves.pop(run_id, None)
        await task
        return (await self._store.call(self._store.get_run, run_id)).status

    def _moving(self, run_id: int) -> None:
        """The run's workflow continues as new: the activity holding the run here ends
        without it, and the new workflow run attaches to it."""
        if run_id in self._active:
            self._moves[run_id] = (self._holders.get(run_id), asyncio.Event())
            self._holders[run_id] = None

    async def _activity_cancelled(
        self, run_id: int, holder: str | None, task: asyncio.Future[Any]
    ) -> None:
        """The run's activity was cancelled under it. Its workflow cancelled (from
        Temporal's UI, CLI or API): the run is cancelled, its agent's process group stopped.
        Its workflow moved on (continued as new): the run goes on, held by the new workflow
        run once it attaches. Timed out or gone (this replica's beats did not reach Temporal
        in time): the run is another replica's to recover now, so it is dropped here without
        a word — unless its workflow ended with no run to follow (terminated in Temporal):
        then the run is cancelled. A worker shutting down leaves it to the daemon's own
        shutdown."""
        details = activity.cancellation_details()
        active = self._active.get(run_id)
        if active is None or details is None or details.worker_shutdown:
            return
        ended = await self._workflow_ended(run_id) if details.not_found else None
        if details.cancel_requested or ended is not None:
            why = "its workflow was cancelled" if ended is None else f"its workflow {ended}"
            with contextlib.suppress(NightshiftError):
                await Executor.cancel(self, run_id, "temporal", why)
            await asyncio.wait({task}, timeout=DRAIN)
            return
        if self._holders.get(run_id, holder) != holder:
            move = self._moves.get(run_id)
            if move is None or move[0] != holder:
                return  # another workflow run holds it already, or is coming for it
            attached = move[1]
            came = asyncio.ensure_future(attached.wait())
            try:  # the new workflow run attaches, or the run ends meanwhile
                await asyncio.wait(
                    {came, task},
                    timeout=self._config.heartbeat_timeout.total_seconds(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                came.cancel()
            if attached.is_set() or task.done():
                return
            self._moves.pop(run_id, None)
            log.warning("a run's workflow moved and never came back for it", run_id=run_id)
        else:
            log.warning("a run's activity timed out here: it is recovered elsewhere", run_id=run_id)
        await self._let_go(run_id)

    async def _workflow_ended(self, run_id: int) -> str | None:
        """How the run's workflow was ended by a person, with no run to follow it (terminated
        or cancelled in Temporal's UI or CLI); None otherwise, or when Temporal cannot say."""
        try:
            async with asyncio.timeout(5):
                status = (await self._handle(run_id).describe()).status
        except (TimeoutError, RPCError):
            return None
        # Completed is the lost-run path's end (another replica took the run): not this.
        return (
            {
                WorkflowExecutionStatus.TERMINATED: "was terminated",
                WorkflowExecutionStatus.CANCELED: "was cancelled",
            }.get(status)
            if status is not None
            else None
        )

    async def _let_go(self, run_id: int) -> None:
        """Stop the run here and release it: the lost-run activity waiting for this replica
        takes it now."""
        active = self._active.get(run_id)
        await self._drop_here(run_id)
        if active is not None and active.task is not None:
            await asyncio.wait({active.task}, timeout=DRAIN)
        await self._store.call(self._store.claim_run, run_id, self._owner, None)

    async def _still_beating(self) -> set[str]:
        return await self._live() if self._live is not None else set()

    async def _drop_here(self, run_id: int) -> None:
        """Stop executing `run_id` here without reporting more of it (another replica, or
        this one's recovery, records how it ended)."""
        active = self._active.get(run_id)
        if active is not None and not active.lost:
            active.lost = True
            self.lost_here += 1
            if active.agent is not None:
                await active.agent.cancel()

    async def _recover_lost(self, run_id: int) -> None:
        """The replica executing `run_id` stopped heartbeating: take the run over (once, by
        claim), record it interrupted and let its policy run it again, here or elsewhere."""
        run = await self._store.call(self._store.get_run, run_id)
        if run.finished_at is not None or self._owner is None:
            return
        active = self._active.get(run_id)
        if active is not None:  # its activity timed out while it executes here
            await self._drop_here(run_id)
            if active.task is not None:
                await asyncio.wait({active.task}, timeout=DRAIN)
        elif run.owner not in (None, self._owner) and run.owner in await self._still_beating():
            # Its replica still beats to the database: cut off from Temporal only, its agent
            # going on. Taken now, the run would run twice; it is taken once that replica lets
            # it go (back on Temporal, it learns its activity is gone) or is gone.
            raise EngineUnavailable(
                f"run {run_id}: its replica {run.owner} still beats; waiting for it to let go"
            )
        if not await self._store.call(self._store.claim_run, run_id, run.owner, self._owner):
            return  # taken over already
        self.taken_over += 1
        log.warning("recovering a run whose replica went silent", run_id=run_id, replica=run.owner)
        text = (
            f"its replica ({run.owner}) went silent; recovered by {self._owner}"
            if run.owner is not None
            else f"its replica lost Temporal and let it go; recovered by {self._owner}"
        ) + left_on(self._branch_of(run), run.owner or "its replica")
        await self._emit(run_id, Message(level="warning", text=text))
        await self._finish(run_id, RunStatus.INTERRUPTED, "its replica went silent", None)

    async def _deliver_here(self, run_id: int, message: dict[str, Any]) -> None:
        """A message the run's workflow routed to this replica, where the run executes."""
        kind = message["kind"]
        if kind == "move":
            self._moving(run_id)
        elif kind == "steer":
            await Executor.steer(self, run_id, message["text"], message["by"], message.get("ref"))
        elif kind == "decide":
            await Executor.decide(
                self,
                run_id,
                message["approval_id"],
                message["approved"],
                message["by"],
                message.get("reason"),
            )
        elif kind == "pause":
            await Executor.pause(self, run_id, message["by"])
        elif kind == "resume":
            await Executor.resume(self, run_id, message["by"])
        elif kind == "cancel":
            await Executor.cancel(self, run_id, message["by"], message.get("reason"))
        elif kind == "cancelled":  # its workflow was, and the run may not have heard it yet
            active = self._active.get(run_id)
            if active is not None and active.cancelled_by is None and not active.lost:
                await Executor.cancel(self, run_id, "temporal", "its workflow was cancelled")
        elif kind == "expire":
            active = self._active.get(run_id)
            if active is not None:  # ended meanwhile: nothing is waiting any more
                at = datetime.fromisoformat(message["at"])
                active.inbox.put(expiry(message["approval_id"], at))
