"""Runs end to end through the in-process daemon, the script backend and the control API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.errors import ControlError
from daemon.runs import RunStatus
from daemon.store import NewRun
from daemon.testing import Project, running_daemon, wait_for

from .helpers import alive, client_call, events, run_row, wait_event, wait_status

# A script that waits for a file to appear, so tests decide when runs end.
GATED = """\
import json, sys, time, pathlib
ctx = json.loads(sys.stdin.readline())
gate = pathlib.Path(ctx["inputs"]["gate"])
print(json.dumps({"type": "step", "title": "waiting for gate"}), flush=True)
while not gate.exists():
    time.sleep(0.01)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "gate opened"}), flush=True)
"""


def gated_project(project: Project, limits: dict[str, int]) -> Path:
    project.skill("gated", GATED, inputs={"gate": {"type": "string", "required": True}})
    gate = project.root / "gate"
    for name, limit in limits.items():
        project.automation(
            name,
            skill="gated",
            inputs={"gate": str(gate)},
            policies={"concurrency": {"max_instances": limit}},
        )
    return gate


async def test_limits_hold_under_many_simultaneous_triggers(project: Project) -> None:
    gate = gated_project(project, {"alpha": 2, "beta": 3})
    config = project.config(concurrency={"max_runs": 4})
    async with running_daemon(config) as d:
        ids = await asyncio.gather(
            *[d.dispatcher.manual(name, {}, "test") for name in ["alpha", "beta"] * 6]
        )
        await wait_for(lambda: len(d.executor.active_ids) == 4)
        for _ in range(20):  # the limits hold while runs keep waiting, not just at one instant
            active = [await run_row(d, i) for i in d.executor.active_ids]
            assert len(active) <= 4
            assert sum(r.automation == "alpha" for r in active) <= 2
            assert sum(r.automation == "beta" for r in active) <= 3
            await asyncio.sleep(0.01)
        assert len(d.executor.queued_ids) == 8
        gate.touch()
        for run in ids:
            assert run.id is not None
            await wait_status(d, run.id, RunStatus.SUCCEEDED)
        # FIFO per automation: started in the order they were triggered
        alpha = [await run_row(d, r.id) for r in ids if r.automation == "alpha" and r.id]
        starts = [r.started_at for r in alpha]
        assert starts == sorted(starts)  # type: ignore[type-var]


async def test_steering_reaches_the_script_and_changes_what_it_does(project: Project) -> None:
    project.skill(
        "steerable",
        """\
        import json, sys
        ctx = json.loads(sys.stdin.readline())
        print(json.dumps({"type": "step", "title": "ready for guidance"}), flush=True)
        msg = json.loads(sys.stdin.readline())
        plan = "patch only" if "patch" in msg["text"] else "everything"
        print(json.dumps({"type": "message", "text": f"plan: {plan} (from {msg['by']})"}), flush=True)
        print(json.dumps({"type": "finished", "status": "succeeded", "summary": plan}), flush=True)
        """,
    )
    project.automation("steer-me", skill="steerable")
    async with running_daemon(project.config()) as d:
        run_id = await client_call(d, "trigger", "steer-me", {})
        await wait_event(d, run_id, "step", title="ready for guidance")
        await client_call(d, "steer", run_id, "only patch versions please")
        run = await wait_status(d, run_id, RunStatus.SUCCEEDED)
        assert run.summary == "patch only"
        log = await events(d, run_id)
        steer = next(e for e in log if e["type"] == "steer_received")
        assert steer["text"] == "only patch versions please"
        assert steer["by"].startswith("cli:")
        assert any(e["type"] == "message" and e["text"].startswith("plan: patch only") for e in log)


APPROVING = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push",
                  "description": "push branch fix/deps"}), flush=True)
decision = json.loads(sys.stdin.readline())
assert decision["type"] == "approval_decision" and decision["id"] == "push-1"
if decision["approved"]:
    print(json.dumps({"type": "message", "text": "pushed"}), flush=True)
else:
    print(json.dumps({"type": "message", "text": f"not pushed: {decision['reason']}"}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "done"}), flush=True)
"""


@pytest.mark.parametrize("approve", [True, False])
async def test_approval_waits_then_is_decided_once(project: Project, approve: bool) -> None:
    project.skill("pusher", APPROVING)
    project.automation("push", skill="pusher")
    async with running_daemon(project.config()) as d:
        run_id = await client_call(d, "trigger", "push", {})
        await wait_status(d, run_id, RunStatus.WAITING)
        approvals = await d.store.call(d.store.approvals, run_id)
        assert [(a.request_id, a.status) for a in approvals] == [("push-1", "pending")]
        await wait_for(lambda: d.executor.waiting_ids == [run_id])
        assert b'nightshift_runs{state="waiting"} 1.0' in d.metrics.render()
        if approve:
            assert await client_call(d, "decide", run_id, True, None, None) == "push-1"
        else:
            await client_call(d, "decide", run_id, False, "push-1", "not on Fridays")
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        log = await events(d, run_id)
        texts = [e.get("text") for e in log if e["type"] == "message"]
        assert texts == (["pushed"] if approve else ["not pushed: not on Fridays"])
        statuses = [e["status"] for e in log if e["type"] == "status"]
        assert statuses == ["waiting", "running"]
        (approval,) = await d.store.call(d.store.approvals, run_id)
        assert approval.status == ("approved" if approve else "denied")
        assert approval.decided_by and approval.decided_by.startswith("cli:")
        with pytest.raises(ControlError, match="is not running"):
            await client_call(d, "decide", run_id, True, None, None)


async def test_a_run_that_ends_while_waiting_expires_its_pending_approval(
    project: Project,
) -> None:
    project.skill("pusher", APPROVING)
    project.automation("push", skill="pusher")
    async with running_daemon(project.config()) as d:
        run_id = await client_call(d, "trigger", "push", {})
        await wait_status(d, run_id, RunStatus.WAITING)
        await client_call(d, "cancel", run_id, None)
        run = await wait_status(d, run_id, RunStatus.CANCELLED)
        assert run.finished_at is not None and run.summary.startswith("cancelled by cli:")
        (approval,) = await d.store.call(d.store.approvals, run_id)
        assert (approval.status, approval.decided_by, approval.reason) == (
            "expired",
            "nightshift",
            "run ended (cancelled)",
        )
        assert approval.decided_at == run.finished_at
        with pytest.raises(ControlError, match="is not running"):
            await client_call(d, "decide", run_id, True, None, None)


async def test_malformed_and_oversized_lines_are_visible_warnings(project: Project) -> None:
    project.skill(
        "noisy",
        """\
        import json, sys
        sys.stdin.readline()
        print("this is not json")
        print(json.dumps({"type": "teleport"}))
        print(json.dumps({"type": "command"}))
        print("x" * 600_000)
        print(json.dumps({"type": "command", "command": "make", "exit_code": 0,
                          "output_tail": "y" * 100_000}))
        for i in range(2000):
            print(json.dumps({"type": "message", "text": f"line {i}"}))
        print(json.dumps({"type": "finished", "status": "succeeded", "summary": "survived"}))
        """,
    )
    project.automation("noisy", skill="noisy")
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("noisy", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=60)
        assert done.summary == "survived"
        log = await events(d, run.id)
        warnings = [e["text"] for e in log if e.get("level") == "warning"]
        assert warnings[0].startswith("malformed line from script (not JSON): this is not json")
        assert warnings[1].startswith("unknown event type 'teleport'")
        assert warnings[2].startswith(
            "malformed command event from script (command: Field required)"
        )
        assert warnings[3].startswith("script wrote a 600000-byte line")
        command = next(e for e in log if e["type"] == "command")
        assert len(command["output_tail"]) < 4100 and command["output_tail"].startswith(
            "[…truncated]"
        )
        assert sum(1 for e in log if e["type"] == "message" and e.get("level") == "info") == 2000


HANGING = """\
import json, subprocess, sys, threading, pathlib
ctx = json.loads(sys.stdin.readline())
child = subprocess.Popen(["sleep", "300"])
pathlib.Path(ctx["workdir"], "child.pid").write_text(str(child.pid))
print(json.dumps({"type": "step", "title": "hanging"}), flush=True)
threading.Event().wait()  # hang until killed
"""


async def test_hung_script_times_out_and_its_process_group_is_killed(project: Project) -> None:
    project.skill("hang", HANGING)
    project.automation("hang", skill="hang", policies={"timeout": "1s"})
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("hang", {}, "test")
        assert run.id is not None
        pidfile = d.config.state_dir / "runs" / str(run.id) / "child.pid"
        await wait_for(pidfile.exists)
        done = await wait_status(d, run.id, RunStatus.TIMED_OUT)
        assert done.summary == "timed out after 1s"
        child = int(pidfile.read_text())
        await wait_for(lambda: not alive(child), 5)


async def test_cancel_stops_a_running_script_and_a_queued_run(project: Project) -> None:
    project.skill("hang", HANGING)
    project.automation("hang", skill="hang")
    async with running_daemon(project.config()) as d:
        first = await client_call(d, "trigger", "hang", {})
        second = await client_call(d, "trigger", "hang", {})  # queued behind max_instances 1
        pidfile = d.config.state_dir / "runs" / str(first) / "child.pid"
        await wait_for(pidfile.exists)
        await client_call(d, "cancel", second)
        assert (await wait_status(d, second, RunStatus.CANCELLED)).started_at is None
        await client_call(d, "cancel", first)
        done = await wait_status(d, first, RunStatus.CANCELLED)
        assert done.summary.startswith("cancelled by cli:")
        await wait_for(lambda: not alive(int(pidfile.read_text())), 5)


async def test_failed_run_is_retried_with_backoff(project: Project) -> None:
    project.skill(
        "flaky",
        """\
        import json, sys
        ctx = json.loads(sys.stdin.readline())
        if ctx["run"]["attempt"] == 1:
            print("boom", file=sys.stderr)
            sys.exit(3)
        print(json.dumps({"type": "finished", "status": "succeeded", "summary": "second time lucky"}))
        """,
    )
    project.automation("flaky", skill="flaky", policies={"retries": {"max": 1, "backoff": "300ms"}})
    async with running_daemon(project.config()) as d:
        # Keyed and untrusted, as a mention on a fork's pull request starts one.
        asked = NewRun("flaky", "github_mention", {}, key="o/r#7", untrusted=True)
        run = await d.store.call(d.store.create_run, asked)
        d.executor.enqueue(run)
        assert run.id is not None
        failed = await wait_status(d, run.id, RunStatus.FAILED)
        assert failed.summary == "script exited with code 3: boom"
        retry = await wait_for(
            lambda: d.store.list_runs(automation="flaky", statuses=["succeeded"]), 10
        )
        assert retry[0].retry_of == run.id and retry[0].attempt == 2
        assert (retry[0].key, retry[0].untrusted) == ("o/r#7", True)  # the same ask, the same trust
        assert retry[0].started_at is not None and failed.finished_at is not None
        assert (retry[0].started_at - failed.finished_at).total_seconds() >= 0.3
        assert retry[0].summary == "second time lucky"


async def test_bad_manual_inputs_are_refused_and_nothing_is_stored(project: Project) -> None:
    project.skill("typed", "print()", inputs={"count": {"type": "integer", "required": True}})
    project.automation("typed", skill="typed", inputs={"count": 1})
    async with running_daemon(project.config()) as d:
        with pytest.raises(ControlError, match="count: Input should be a valid integer"):
            await client_call(d, "trigger", "typed", {"count": "many"})
        with pytest.raises(ControlError, match="automation 'nope' not found"):
            await client_call(d, "trigger", "nope", {})
        assert await d.store.call(d.store.list_runs) == []
        ok = await client_call(d, "trigger", "typed", {"count": "7"})
        assert (await run_row(d, ok)).inputs == {"count": "7"}


async def test_secrets_never_reach_the_store_or_logs(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from daemon import logs

    monkeypatch.setenv("DEPLOY_TOKEN", "s3cr3t-value-123")
    log_out = io.StringIO()
    logs.configure("json", "debug", stream=log_out)
    project.skill(
        "leaky",
        """\
        import json, os, sys
        sys.stdin.readline()
        token = os.environ["DEPLOY_TOKEN"]
        print(json.dumps({"type": "message", "text": f"using token {token}"}))
        print(json.dumps({"type": "command", "command": f"curl -H 'auth: {token}'", "exit_code": 0}))
        print(f"stderr also has {token}", file=sys.stderr)
        print(json.dumps({"type": "finished", "status": "succeeded", "summary": f"done with {token}"}))
        """,
    )
    project.automation("leaky", skill="leaky", env={"DEPLOY_TOKEN": "${DEPLOY_TOKEN}"})
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("leaky", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.SUCCEEDED)
        assert done.summary == "done with ***"
        dumped = str(await events(d, run.id))
        assert "s3cr3t" not in dumped and "using token ***" in dumped
    db = (project.root / ".nightshift" / "nightshift.db").read_bytes()
    assert b"s3cr3t-value-123" not in db
    logged = log_out.getvalue()
    assert "stderr also has ***" in logged  # the script's stderr is logged, masked
    assert "s3cr3t" not in logged


async def test_a_run_starts_once_however_often_it_is_queued(project: Project) -> None:
    from daemon.store import NewRun

    project.skill("ok", "print()")
    project.automation("ok", skill="ok")
    async with running_daemon(project.config()) as d:
        run = await d.store.call(d.store.create_run, NewRun("ok", "manual", {}))
        assert run.id is not None
        d.executor.enqueue(run)
        d.executor.enqueue(run)  # queued twice here
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        # Queued again once it ran (as by another replica, or a stale listing): left alone.
        d.executor.enqueue(run)
        await wait_for(lambda: run.id not in d.executor.queued_ids)
        await d.executor.settle()
        log = await events(d, run.id)
        assert [e["type"] for e in log] == ["started", "finished"]
        assert (await run_row(d, run.id)).status == RunStatus.SUCCEEDED


@pytest.mark.parametrize(("policy", "retried"), [("retry", True), ("fail", False)])
async def test_runs_a_dead_daemon_left_running_are_interrupted_then_handled_by_policy(
    project: Project, policy: str, retried: bool
) -> None:
    from daemon.store import Decision, NewRun, Store

    project.skill("ok", "print()")
    project.automation("ok", skill="ok", policies={"on_interrupt": policy})
    config = project.config()
    # What a daemon killed mid-run leaves behind: a run marked running, with a step logged.
    store = Store(config.resolved_database_url())
    store.create_all()
    left = store.dispatch(
        source="manual",
        type="trigger",
        payload={},
        decisions=[Decision("ok", "matched", run=NewRun("ok", "manual", {}))],
    )
    assert left is not None
    run_id = left.runs[0].id
    assert run_id is not None
    store.update_run(run_id, status="running")
    store.append_run_event(run_id, "step", {"type": "step", "title": "halfway"})
    store.close()
    async with running_daemon(config) as d:
        interrupted = await wait_status(d, run_id, RunStatus.INTERRUPTED)
        assert interrupted.summary == "the daemon stopped during the run"
        log = await events(d, run_id)
        assert [e["type"] for e in log] == ["step", "message", "finished"] + (
            ["message"] if retried else []
        )
        if retried:
            await wait_status(d, run_id + 1, RunStatus.SUCCEEDED)
            assert (await run_row(d, run_id + 1)).retry_of == run_id
            # Queued by the recovery and found queued on start: it still runs once.
            await d.executor.settle()
            retry_log = await events(d, run_id + 1)
            assert [e["type"] for e in retry_log].count("started") == 1, retry_log
        else:
            assert [r.id for r in await d.store.call(d.store.list_runs)] == [run_id]


@pytest.mark.parametrize(
    ("before", "interrupted", "again"),
    [
        # A failed first attempt (retries.max 0) does not take the interruption's retry.
        (["failed"], 3, True),
        # Interrupted once before, with a budget of one interruption: this second one ends it.
        (["interrupted"], 1, False),
        (["interrupted", "interrupted"], 3, True),
    ],
)
async def test_interruptions_have_a_retry_budget_of_their_own(
    project: Project, before: list[str], interrupted: int, again: bool
) -> None:
    from daemon.store import NewRun, Store

    project.skill("ok", "print()")
    project.automation("ok", skill="ok", policies={"retries": {"interrupted": interrupted}})
    config = project.config()
    store = Store(config.resolved_database_url())
    store.create_all()
    previous: int | None = None
    for attempt, status in enumerate([*before, "running"], start=1):
        run = store.create_run(NewRun("ok", "manual", {}, attempt=attempt, retry_of=previous))
        assert run.id is not None
        store.update_run(run.id, status=status)
        previous = run.id
    assert previous is not None
    store.close()
    async with running_daemon(config) as d:
        await wait_status(d, previous, RunStatus.INTERRUPTED)
        await d.executor.settle()
        said = [e.get("text") for e in await events(d, previous) if e["type"] == "message"]
        runs = await d.store.call(d.store.list_runs)
        if again:
            assert said[-1] == f"retrying as run {previous + 1} (now)"
            await wait_status(d, previous + 1, RunStatus.SUCCEEDED)
        else:
            assert said[-1] == "not run again: interrupted 2 times (retries.interrupted: 1)"
            assert max(r.id or 0 for r in runs) == previous


FINISH_ON_STEER = """\
import json, pathlib, sys
ctx = json.loads(sys.stdin.readline())
pathlib.Path(ctx["workdir"], "reading").touch()
sys.stdin.readline()
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "steered"}), flush=True)
"""


async def test_a_steer_the_agent_took_just_before_it_finished_is_still_recorded(
    project: Project,
) -> None:
    import threading

    project.skill("quick", FINISH_ON_STEER)
    project.automation("quick", skill="quick")
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("quick", {}, "test")
        assert run.id is not None
        run_id = run.id
        await wait_for((d.config.state_dir / "runs" / str(run_id) / "reading").exists)
        # Hold the store so recording the steer is still in hand when the agent finishes.
        release = threading.Event()
        held = asyncio.ensure_future(d.store.call(release.wait))
        await d.executor.steer(run_id, "finish now", "test")
        active = d.executor._active[run_id]  # white box: the run has seen its result
        await wait_for(lambda: active.inbox_closed)
        release.set()
        await held
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED)
        assert done.summary == "steered"
        assert any(
            e["type"] == "steer_received" and e["text"] == "finish now"
            for e in await events(d, run_id)
        )


ESCAPER = """\
import json, pathlib, subprocess, sys, threading
ctx = json.loads(sys.stdin.readline())
# Leaves the run's process group, as a daemon would; with "inherit" it keeps the script's
# stdout and stderr open after the script exits.
quiet = {} if ctx["inputs"]["inherit"] else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
child = subprocess.Popen(["setsid", "sleep", "300"], **quiet)
pathlib.Path(ctx["inputs"]["pidfile"]).write_text(str(child.pid))
if ctx["inputs"]["hang"]:
    threading.Event().wait()
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "left a child"}))
"""


@pytest.mark.parametrize(
    ("hang", "inherit"),
    [(True, False), (False, False), (False, True)],
    ids=["cancelled", "finished", "finished holding its output"],
)
async def test_a_setsid_grandchild_ends_with_its_run(
    project: Project, hang: bool, inherit: bool
) -> None:
    project.skill(
        "escaper",
        ESCAPER,
        inputs={
            "pidfile": {"type": "string"},
            "hang": {"type": "boolean"},
            "inherit": {"type": "boolean"},
        },
    )
    pidfile = project.root / "child.pid"
    project.automation(
        "escaper",
        skill="escaper",
        inputs={"pidfile": str(pidfile), "hang": hang, "inherit": inherit},
        policies={"timeout": "60s"},
    )
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("escaper", {}, "test")
        assert run.id is not None
        pid = int(await wait_for(lambda: pidfile.exists() and pidfile.read_text()))
        if hang:
            # Still running: its grandchild is alive until the run ends. (A run that
            # finishes at once may have ended, and its grandchild with it, by now.)
            assert alive(pid)
            await d.executor.cancel(run.id, "test")
        await wait_status(d, run.id, RunStatus.CANCELLED if hang else RunStatus.SUCCEEDED)
        await wait_for(lambda: not alive(pid), timeout=10)
