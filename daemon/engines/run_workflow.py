"""The workflow of one run on Temporal. It imports nothing of nightshift's: workflow code runs
in Temporal's sandbox, replayed from history, and must stay deterministic.

The run executes as one heartbeating activity on whichever replica takes it; that replica
tells the workflow its own task queue, and every message for the run (steering, decisions,
pause, resume, cancel) arriving as a signal on any replica is delivered there by a short
activity. An approval's deadline is a durable timer here: its expiry is delivered the same
way. The run's events go to nightshift's store, never into the workflow's history, so the
history holds the run's messages only; once it holds `history_events` of them, the workflow
tells the replica executing the run that it moves, and continues as new, carrying its
undelivered messages and deadlines — the new workflow run holds the same execution through a
short-lived attachment on that replica's queue, so the agent never notices.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

EXECUTE = "nightshift.execute"
DELIVER = "nightshift.deliver"
LOST = "nightshift.lost"
ATTACH = "nightshift.attach"


@workflow.defn(name="nightshift.run")
class RunWorkflow:
    """Runs one nightshift run; its id is `<task queue>-run-<run id>` (`temporal.workflow_id`)."""

    @workflow.init
    def __init__(
        self,
        run_id: int,
        heartbeat_timeout: float = 30.0,
        history_events: int = 1000,
        moved: dict[str, Any] | None = None,
    ) -> None:
        # What a workflow run it continued from had not delivered yet, set before any signal
        # of this one is handled (they follow it in the inbox).
        moved = moved or {}
        self._queue: str | None = moved.get("queue")
        self._inbox: list[dict[str, Any]] = list(moved.get("inbox", []))
        # approval id -> when it expires (ISO 8601)
        self._deadlines: dict[str, str] = dict(moved.get("deadlines", {}))
        self._new_deadline = False
        self._may_move = True  # a move that failed is tried again after the next message

    @workflow.run
    async def run(
        self,
        run_id: int,
        heartbeat_timeout: float = 30.0,
        history_events: int = 1000,
        moved: dict[str, Any] | None = None,
    ) -> str:
        beats = timedelta(seconds=heartbeat_timeout)
        if moved is None:
            execution = workflow.start_activity(
                EXECUTE,
                run_id,
                start_to_close_timeout=timedelta(days=7),
                heartbeat_timeout=beats,
                retry_policy=RetryPolicy(maximum_attempts=1),
                # Cancelling the workflow cancels the run: it waits for the run to end.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        else:  # continued as new: the run executes on `queue` already, held from here on
            execution = workflow.start_activity(
                ATTACH,
                run_id,
                task_queue=self._queue,
                # Its replica gone meanwhile, the attachment never starts: the run is lost.
                schedule_to_start_timeout=beats,
                start_to_close_timeout=timedelta(days=7),
                heartbeat_timeout=beats,
                retry_policy=RetryPolicy(maximum_attempts=1),
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        try:
            result = await self._serve(run_id, execution, history_events)
            if result is not None:
                return result
        except BaseException as exc:  # a cancel may come as an activity's, while one runs
            if not is_cancelled_exception(exc):
                raise
            execution.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await execution
            if self._queue is not None:
                # Its execution may never have heard: cancelled while the workflow moved,
                # before the attachment started, the run is held by the workflow run it
                # left. The replica is told directly (and ignores it once the run has ended).
                await self._deliver(run_id, {"kind": "cancelled"})
            raise
        moved = {"queue": self._queue, "inbox": self._inbox, "deadlines": self._deadlines}
        workflow.continue_as_new(args=[run_id, heartbeat_timeout, history_events, moved])

    def _long(self, history_events: int) -> bool:
        """Whether this workflow run's history is long enough to continue as new."""
        info = workflow.info()
        return (
            info.get_current_history_length() >= history_events
            or info.is_continue_as_new_suggested()
        )

    async def _serve(
        self, run_id: int, execution: asyncio.Task[Any], history_events: int
    ) -> str | None:
        """Route the run's messages and deadlines until its execution ends (its status), or
        until the history is long and the replica executing the run knows it moves (None)."""
        while True:
            long = self._may_move and self._long(history_events)
            if long and self._queue is not None and not execution.done():
                if await self._deliver(run_id, {"kind": "move"}) and not execution.done():
                    return None
                self._may_move = False
            with contextlib.suppress(TimeoutError):  # a deadline came first
                await workflow.wait_condition(
                    lambda: (
                        execution.done()
                        or (self._queue is not None and bool(self._inbox))
                        or self._new_deadline
                    ),  # wait for it too
                    timeout=self._until_deadline(),
                )
            self._new_deadline = False
            self._expire_due()
            if execution.done():
                try:
                    return str(await execution)
                except ActivityError:
                    # The replica executing it went silent (killed, partitioned): another
                    # replica records the run interrupted and runs it again as its policy says.
                    await workflow.execute_activity(
                        LOST,
                        run_id,
                        # A claim and a few rows: an attempt handed to a frozen replica is
                        # given up quickly and tried again elsewhere.
                        start_to_close_timeout=timedelta(seconds=5),
                        # Tried until the run is taken: its replica may hold it for as long
                        # as it beats to the database without reaching Temporal.
                        retry_policy=RetryPolicy(
                            initial_interval=timedelta(milliseconds=500),
                            maximum_interval=timedelta(seconds=2),
                            maximum_attempts=0,
                        ),
                    )
                    return "lost"
            if self._queue is None or not self._inbox:
                continue  # woken by a new deadline: nothing to deliver yet
            self._may_move = await self._deliver(run_id, self._inbox.pop(0)) or self._may_move

    async def _deliver(self, run_id: int, message: dict[str, Any]) -> bool:
        """Deliver one message to the replica executing the run; whether it arrived."""
        try:
            await workflow.execute_activity(
                DELIVER,
                args=[run_id, message],
                task_queue=self._queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise  # the workflow is being cancelled: not this message's failure
            workflow.logger.warning("message not delivered to run %s: %s", run_id, exc.cause)
            return False
        return True

    def _until_deadline(self) -> float | None:
        """Seconds until the nearest approval deadline (a durable timer); None without one."""
        if not self._deadlines:
            return None
        nearest = min(datetime.fromisoformat(at) for at in self._deadlines.values())
        return max((nearest - workflow.now()).total_seconds(), 0.001)

    def _expire_due(self) -> None:
        """Each deadline passed becomes an expiry for the run, delivered like a decision."""
        now = workflow.now()
        for approval_id, at in list(self._deadlines.items()):
            if datetime.fromisoformat(at) <= now:
                del self._deadlines[approval_id]
                self._inbox.append({"kind": "expire", "approval_id": approval_id, "at": at})

    @workflow.signal(name="approval_waiting")
    def approval_waiting(self, approval_id: str, expires_at: str) -> None:
        """The run asks for an approval: it expires at `expires_at` unless decided first."""
        self._deadlines[approval_id] = expires_at
        self._new_deadline = True

    @workflow.signal(name="running_on")
    def running_on(self, queue: str) -> None:
        """The replica executing the run: where its messages go."""
        self._queue = queue

    @workflow.signal(name="message")
    def message(self, message: dict[str, Any]) -> None:
        """A message for the run (steer, decide, pause, resume, cancel)."""
        if message.get("kind") == "decide":  # decided: its deadline is no more
            self._deadlines.pop(str(message.get("approval_id")), None)
        self._inbox.append(message)
