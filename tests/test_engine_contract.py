"""One contract for both engines: what a person and a trigger may expect of a run, whether
the local engine executes it or Temporal does (the dev server of `conftest.temporal`).

Each test runs once per engine; a behaviour one engine has and the other lacks fails here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for

from .helpers import events, wait_status

Configure = Callable[..., Any]

STEERED = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "step", "title": "waiting for steering"}), flush=True)
steer = json.loads(sys.stdin.readline())
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "steered: " + steer["text"]}), flush=True)
"""

ASKS = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push",
                  "description": "push the fix"}), flush=True)
decision = json.loads(sys.stdin.readline())
said = "approved" if decision["approved"] else "denied: " + str(decision.get("reason"))
print(json.dumps({"type": "finished", "status": "succeeded", "summary": said}), flush=True)
"""

TICKS = """\
import json, sys, time
sys.stdin.readline()
for n in range(400):
    print(json.dumps({"type": "step", "title": f"tick {n}"}), flush=True)
    time.sleep(0.05)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "ticked"}), flush=True)
"""

STAYS = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
if ctx["run"]["attempt"] == 1:
    print(json.dumps({"type": "step", "title": "working"}), flush=True)
    sys.stdin.readline()  # until its daemon stops
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "attempt " + str(ctx["run"]["attempt"])}), flush=True)
"""


@pytest.fixture(params=["local", "temporal"])
def configure(request: pytest.FixtureRequest, project: Project) -> Configure:
    """The project's config on the engine under test (a task queue of its own on Temporal)."""
    if request.param == "local":
        return project.config
    address = request.getfixturevalue("temporal")
    engine = {
        "type": "temporal",
        "address": address,
        "task_queue": f"contract-{uuid.uuid4().hex[:8]}",
    }

    def on_temporal(**extra: Any) -> Any:
        return project.config(engine=engine, **extra)

    return on_temporal


async def started(d: Daemon, automation: str) -> int:
    run = await d.dispatcher.manual(automation, {}, "test")
    assert run.id is not None
    await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run.id or 0)), 20)
    return run.id


async def test_a_run_starts_once_and_steering_reaches_it(
    project: Project, configure: Configure
) -> None:
    project.skill("steered", STEERED)
    project.automation("steered", skill="steered")
    async with running_daemon(configure()) as d:
        run_id = await started(d, "steered")
        # Submitted again (a redelivery, a restart): it is not run twice.
        d.executor.enqueue(await d.store.call(d.store.get_run, run_id))
        await d.executor.steer(run_id, "only patch versions", "cli:ann", ref="slack:1.2")
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=20)
        assert done.summary == "steered: only patch versions"
        log = await events(d, run_id)
        assert [e["type"] for e in log].count("started") == 1
        steers = [(e["text"], e["by"], e["ref"]) for e in log if e["type"] == "steer_received"]
        assert steers == [("only patch versions", "cli:ann", "slack:1.2")]
        assert len(await d.store.call(d.store.list_runs)) == 1
        with pytest.raises(Exception, match="is not running"):
            await d.executor.steer(run_id, "too late", "cli:ann")


async def test_the_first_decision_wins_and_a_late_one_is_refused(
    project: Project, configure: Configure
) -> None:
    project.skill("asks", ASKS)
    project.automation("asks", skill="asks")
    async with running_daemon(configure()) as d:
        run = await d.dispatcher.manual("asks", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.WAITING, timeout=20)
        with pytest.raises(Exception, match="no pending approval 'nope'"):
            await d.executor.decide(run.id, "nope", True, "web:ann", None)
        assert await d.executor.decide(run.id, None, False, "web:ann", "not today") == "push-1"
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=20)
        assert done.summary == "denied: not today"
        (decided,) = await d.store.call(d.store.approvals, run.id)
        assert (decided.status, decided.decided_by) == ("denied", "web:ann")
        with pytest.raises(Exception, match="is not running"):
            await d.executor.decide(run.id, "push-1", True, "cli:bob", None)


async def test_an_undecided_approval_expires_as_a_deny(
    project: Project, configure: Configure
) -> None:
    project.skill("asks", ASKS)
    project.automation("asks", skill="asks", policies={"approval_ttl": "1s"})
    async with running_daemon(configure()) as d:
        run = await d.dispatcher.manual("asks", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
        assert done.summary.startswith("denied: expired at ")
        (expired,) = await d.store.call(d.store.approvals, run.id)
        assert (expired.status, expired.decided_by) == ("expired", "nightshift")


async def test_pause_holds_a_run_and_resume_continues_it(
    project: Project, configure: Configure
) -> None:
    project.skill("ticks", TICKS)
    project.automation("ticks", skill="ticks")
    async with running_daemon(configure()) as d:
        run_id = await started(d, "ticks")
        await d.executor.pause(run_id, "web:ann")
        await wait_status(d, run_id, RunStatus.PAUSED, timeout=20)
        await d.executor.resume(run_id, "web:ann")
        await wait_status(d, run_id, RunStatus.RUNNING, timeout=20)
        texts = [e.get("text") for e in await events(d, run_id) if e["type"] == "message"]
        assert "paused by web:ann" in texts and "resumed by web:ann" in texts
        await d.executor.cancel(run_id, "web:ann")
        await wait_status(d, run_id, RunStatus.CANCELLED, timeout=20)


async def test_cancel_reaches_a_running_run_and_a_queued_one(
    project: Project, configure: Configure
) -> None:
    project.skill("steered", STEERED)
    project.automation("steered", skill="steered", policies={"concurrency": {"max_instances": 2}})
    async with running_daemon(configure(concurrency={"max_runs": 1})) as d:
        run_id = await started(d, "steered")
        waiting = await d.dispatcher.manual("steered", {}, "test")  # one at a time: it queues
        assert waiting.id is not None
        await d.executor.cancel(waiting.id, "cli:bob")
        never = await wait_status(d, waiting.id, RunStatus.CANCELLED, timeout=20)
        assert never.started_at is None and never.summary == "cancelled by cli:bob"
        await d.executor.cancel(run_id, "cli:ann")
        done = await wait_status(d, run_id, RunStatus.CANCELLED, timeout=20)
        assert done.summary == "cancelled by cli:ann"


async def test_a_run_interrupted_by_a_stop_runs_again_after_it(
    project: Project, configure: Configure
) -> None:
    project.skill("stays", STAYS)
    project.automation("stays", skill="stays")
    config = configure()
    async with running_daemon(config) as d:
        run_id = await started(d, "stays")
    async with running_daemon(config) as d:
        first = await d.store.call(d.store.get_run, run_id)
        assert (first.status, first.summary) == ("interrupted", "the daemon was stopped")

        async def retried() -> Any:
            runs = await d.store.call(d.store.list_runs, statuses=["succeeded"])
            return [r for r in runs if r.retry_of == run_id]

        (again,) = await wait_for(retried, 30)
        assert (again.attempt, again.summary) == (2, "attempt 2")
