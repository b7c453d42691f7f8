"""The workflow of one run on Temporal. It imports nothing of nightshift's: workflow code runs
in Temporal's sandbox, replayed from history, and must stay deterministic.

The run executes as one heartbeating activity on whichever replica takes it; that replica
tells the workflow its own task queue, and every message for the run (steering, decisions,
pause, resume, cancel) arriving as a signal on any replica is delivered there by a short
activity. The run's events go to nightshift's store, never into the workflow's history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

EXECUTE = "nightshift.execute"
DELIVER = "nightshift.deliver"
LOST = "nightshift.lost"


@workflow.defn(name="nightshift.run")
class RunWorkflow:
    """Runs one nightshift run; its id is the run's (`nightshift-run-<id>`)."""

    def __init__(self) -> None:
        self._queue: str | None = None
        self._inbox: list[dict[str, Any]] = []

    @workflow.run
    async def run(self, run_id: int, heartbeat_timeout: float = 30.0) -> str:
        execution = workflow.start_activity(
            EXECUTE,
            run_id,
            start_to_close_timeout=timedelta(days=7),
            heartbeat_timeout=timedelta(seconds=heartbeat_timeout),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        while True:
            await workflow.wait_condition(
                lambda: execution.done() or (self._queue is not None and bool(self._inbox))
            )
            if execution.done():
                try:
                    return str(await execution)
                except ActivityError:
                    # The replica executing it went silent (killed, partitioned): another
                    # replica records the run interrupted and runs it again as its policy says.
                    await workflow.execute_activity(
                        LOST,
                        run_id,
                        start_to_close_timeout=timedelta(minutes=5),
                        retry_policy=RetryPolicy(maximum_attempts=10),
                    )
                    return "lost"
            message = self._inbox.pop(0)
            try:
                await workflow.execute_activity(
                    DELIVER,
                    args=[run_id, message],
                    task_queue=self._queue,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ActivityError:
                workflow.logger.warning("message not delivered to run %s", run_id)

    @workflow.signal(name="running_on")
    def running_on(self, queue: str) -> None:
        """The replica executing the run: where its messages go."""
        self._queue = queue

    @workflow.signal(name="message")
    def message(self, message: dict[str, Any]) -> None:
        """A message for the run (steer, decide, pause, resume, cancel)."""
        self._inbox.append(message)
