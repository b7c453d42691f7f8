"""nightshift's own agent loop against a scripted Chat Completions server, working in a real git
worktree with real commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.agents import BuiltinBackend, RunContext
from daemon.loader import Loader
from daemon.runs import Command, Finished, RunStatus, Usage
from daemon.store import NewRun, RunRow
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.models import ChatCompletionsDouble, call, tool_results

from .helpers import BUGGY, FIXED, events, git, wait_event, wait_status


def agent_project(project: Project, repo: Path, model: ChatCompletionsDouble, **agent: Any) -> None:
    project.skill("fix", None, body="Fix the failing test with the smallest change.")
    project.automation(
        "fix",
        skill="fix",
        workspace={"repository": str(repo)},
        agent={
            "backend": "builtin",
            "base_url": model.base_url,
            "model": "scripted",
            "retry_backoff": "10ms",
            **agent,
        },
    )


async def run_fix(project: Project, status: RunStatus) -> tuple[RunRow, list[dict[str, Any]]]:
    """Run the `fix` automation once in a fresh daemon; its row when it ends, and its log."""
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("fix", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, status, timeout=60)
        return done, await events(d, run.id)


async def test_the_agent_edits_and_tests_in_its_own_worktree(project: Project, repo: Path) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [
            call("read_file", path="calc.py"),
            call("write_file", path="calc.py", content=FIXED),
            call("run_command", command="python -m pytest -q test_calc.py"),
            call("finish", summary="fixed add()"),
        ][n - 1]

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        done, log = await run_fix(project, RunStatus.SUCCEEDED)
    assert done.summary == "fixed add()"
    assert [e["type"] for e in log[:2]] == ["started", "message"]  # the log opens with started,
    assert log[1]["text"].startswith("working on branch")  # though the worktree may come first
    assert tool_results(model.requests[1]) == [BUGGY]  # read_file's result reached the model
    command = next(e for e in log if e["type"] == "command")
    assert command["exit_code"] == 0 and "1 passed" in command["output_tail"]
    diff = next(e for e in log if e["type"] == "artifact" and e["kind"] == "diff")
    assert diff["title"].startswith(f"nightshift/fix/{done.id}: 1 file changed")
    assert "-    return a - b\n+    return a + b" in diff["content"]
    assert (repo / "calc.py").read_text() == BUGGY  # the original checkout is untouched
    assert git(repo, "show", f"nightshift/fix/{done.id}:calc.py") == FIXED
    assert "nightshift/fix" not in git(repo, "worktree", "list")  # worktree removed, branch kept
    system = model.requests[0]["messages"][0]["content"]
    assert "Fix the failing test with the smallest change." in system


async def test_steering_mid_run_reaches_the_model_with_its_context(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return call(
                "run_command", command="touch started; while [ ! -f go ]; do sleep 0.01; done"
            )
        steering = [
            m["content"]
            for m in req["messages"]
            if m["role"] == "user" and "[steering" in m["content"]
        ]
        return call(
            "finish",
            summary="plan: " + ("patch only" if any("patch" in s for s in steering) else "all"),
        )

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            tree = project.root / ".nightshift" / "worktrees" / str(run.id)
            await wait_for(lambda: (tree / "started").exists(), 20)
            await d.executor.steer(run.id, "only patch versions", "ann")
            await wait_for(
                lambda: [e for e in d.store.run_events(run.id or 0) if e.type == "steer_received"]
            )
            (tree / "go").touch()
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=60)
    assert done.summary == "plan: patch only"
    roles = [m["role"] for m in model.requests[1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]  # earlier context kept
    assert model.requests[1]["messages"][-1]["content"] == "[steering from ann] only patch versions"


def two_calls(*commands: str) -> dict[str, Any]:
    """An assistant message calling `run_command` once per command, in one turn."""
    calls = [call("run_command", command=c)["tool_calls"][0] for c in commands]
    return {"role": "assistant", "content": None, "tool_calls": calls}


async def test_a_step_is_reported_while_the_model_thinks_and_none_is_lost(
    project: Project, repo: Path
) -> None:
    # The turn's last report is held until the next request is sent, so that reporting it
    # happens while the model thinks. It must still come at once (not with the answer), in
    # order, and whatever ends the run: here a model that fails after a long think.
    answer = asyncio.Event()

    async def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return two_calls("echo first", "while [ ! -f go ]; do sleep 0.01; done; echo second")
        await answer.wait()
        return (500, {"error": "overloaded"})

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            # The first call's report is not held while the turn's second call runs…
            await wait_event(d, run.id, "command", command="echo first", timeout=20)
            (project.root / ".nightshift" / "worktrees" / str(run.id) / "go").touch()
            # … and the last one's comes while the model is still thinking.
            second = await wait_event(d, run.id, "command", exit_code=0, output_tail="second\n")
            assert len(model.requests) == 2 and not answer.is_set()
            answer.set()
            done = await wait_status(d, run.id, RunStatus.FAILED, timeout=30)
            log = await events(d, run.id)
    assert done.summary.startswith("model server error 500")
    commands = [e for e in log if e["type"] == "command"]
    assert [c["command"] for c in commands] == ["echo first", second["command"]]
    assert log[-1]["type"] == "finished"


async def test_a_step_held_for_a_request_that_cannot_be_sent_is_reported_at_once(
    project: Project, repo: Path
) -> None:
    # The model server goes away while a command runs: the next request never leaves, and
    # the step's report must not wait out the retry backoff (ten minutes here).
    model = ChatCompletionsDouble(
        lambda req, n: call(
            "run_command", command="touch started; while [ ! -f go ]; do sleep 0.01; done"
        )
    )
    await model.__aenter__()
    agent_project(project, repo, model, retry_backoff="10m")
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("fix", {}, "test")
        assert run.id is not None
        tree = project.root / ".nightshift" / "worktrees" / str(run.id)
        await wait_for(lambda: (tree / "started").exists(), 20)
        await model.__aexit__()
        (tree / "go").touch()
        await wait_event(d, run.id, "command", exit_code=0, timeout=20)
        await d.executor.cancel(run.id, "ann")
        await wait_status(d, run.id, RunStatus.CANCELLED, timeout=30)
        log = await events(d, run.id)
    assert [e["type"] for e in log].count("command") == 1
    assert log[-1]["type"] == "finished"


async def test_a_cancelled_run_ends_its_stream_even_with_reports_unread(
    project: Project, repo: Path, tmp_path: Path
) -> None:
    # Driven directly, as the daemon's executor does: the report of the first command is
    # still unread when the run is cancelled, and the stream must still end with `finished`.
    never = asyncio.Event()

    async def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return call("run_command", command="true")
        await never.wait()
        return call("finish", summary="unreachable")

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        catalog = Loader(project.automations, project.skills).load()
        ctx = RunContext(
            run_id=1,
            attempt=1,
            automation=catalog.automations["fix"],
            skill=catalog.skills["fix"],
            inputs={},
            event={},
            workdir=tmp_path,
        )
        run = await BuiltinBackend().start(ctx)
        await wait_for(lambda: len(model.requests) == 2, 20)
        await run.cancel()

        async def drained() -> list[Any]:
            return [event async for event in run.events()]

        seen = await asyncio.wait_for(drained(), 10)
    assert [type(e) for e in seen] == [Usage, Command, Finished]
    assert seen[-1].status == RunStatus.FAILED and seen[-1].summary == "stopped"


@pytest.mark.parametrize("approve", [True, False])
async def test_elevated_commands_wait_for_approval(
    project: Project, repo: Path, approve: bool
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return call("run_command", command="git push origin HEAD")
        return call("finish", summary=tool_results(req)[-1].splitlines()[0])

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            await wait_status(d, run.id, RunStatus.WAITING, timeout=30)
            (request,) = await d.store.call(d.store.approvals, run.id)
            assert (request.action, request.description) == (
                "command",
                "run `git push origin HEAD` (with network access)",
            )
            await d.executor.decide(run.id, None, approve, "ann", None if approve else "not today")
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
    if approve:
        assert done.summary.startswith("exit code")  # it ran (there is no remote: it failed)
    else:
        assert done.summary == "not run: approval denied (not today)"


async def test_the_agent_is_told_which_actions_its_skill_marks_for_approval(
    project: Project, repo: Path
) -> None:
    async with ChatCompletionsDouble(lambda req, n: call("finish", summary="ok")) as model:
        agent_project(project, repo, model)
        project.skill("fix", None, permissions={"approval_required": ["push", "pull_request"]})
        await run_fix(project, RunStatus.SUCCEEDED)
        agent_project(project, repo, model)  # the same skill without the manifest's list
        await run_fix(project, RunStatus.SUCCEEDED)
    marked, unmarked = (json.dumps(req["messages"]) for req in model.requests)
    assert "needs an approval before each of these actions: push, pull_request." in marked
    assert "needs an approval" not in unmarked


async def test_denied_commands_never_run(project: Project, repo: Path) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return (
            call("run_command", command="sudo rm -rf /tmp/x")
            if n == 1
            else call("finish", summary=tool_results(req)[-1])
        )

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
    assert done.summary == "refused: this command is denied by policy"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((500, {"error": "overloaded"}), "model server error 500"),
        ((401, {"error": "bad key"}), "model server refused the API key (401)"),
    ],
)
async def test_a_failing_model_server_ends_the_run_clearly(
    project: Project, repo: Path, reply: Any, expected: str
) -> None:
    async with ChatCompletionsDouble(lambda req, n: reply) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.FAILED, timeout=30)
    assert done.summary.startswith(expected)
    assert len(model.requests) == (4 if reply[0] == 500 else 1)  # 5xx retried, 401 not


async def test_an_unreachable_model_server_and_an_exhausted_budget(
    project: Project, repo: Path
) -> None:
    async with ChatCompletionsDouble(
        lambda req, n: call("post_update", text="still going")
    ) as model:
        agent_project(project, repo, model, max_steps=3)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.FAILED, timeout=30)
            assert done.summary == "step budget of 3 model calls used up"
    # The server is gone now: the same automation cannot reach it.
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("fix", {}, "test")
        assert run.id is not None
        done = await wait_status(d, run.id, RunStatus.FAILED, timeout=30)
    assert done.summary.startswith(f"model server unreachable at {model.base_url}")


async def test_commands_run_in_the_sandbox(project: Project, repo: Path) -> None:
    import uuid

    outside = Path("/var/tmp") / f"nightshift-probe-{uuid.uuid4().hex}"  # on the real root fs
    probe = "python3 -c \"import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)\""

    def script(req: dict[str, Any], n: int) -> Any:
        port = model.port
        steps = [
            call(
                "run_command", command=f"echo inside > made.txt && echo nope > {outside}; echo done"
            ),
            call("run_command", command=f"{probe} {port} && echo connected"),
            call("run_command", command=f"NET=1 {probe} {port} && echo connected"),
            call("finish", summary=" | ".join(r.splitlines()[-1] for r in tool_results(req))),
        ]
        return steps[n - 1]

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model, approval_commands=["NET=1 *"])
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            await wait_status(d, run.id, RunStatus.WAITING, timeout=30)  # the NET=1 command
            await d.executor.decide(run.id, None, True, "ann", None)
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
            log = await events(d, run.id)
    write, offline, online = [e for e in log if e["type"] == "command"]
    assert "Read-only file system" in write["output_tail"] and not outside.exists()
    assert offline["exit_code"] != 0 and "connected" not in offline["output_tail"]
    assert online["exit_code"] == 0 and online["output_tail"].strip().endswith("connected")
    assert done.summary.endswith("connected")
    assert (
        git(repo, "show", f"nightshift/fix/{done.id}:made.txt") == "inside\n"
    )  # in-tree write kept


async def test_a_clone_url_gets_a_cached_mirror_and_fresh_upstream(
    project: Project, repo: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))

    def script(req: dict[str, Any], n: int) -> Any:
        if len(tool_results(req)) == 0:
            return call("run_command", command="cat NEWS 2>/dev/null || echo none")
        return call("finish", summary=tool_results(req)[-1].splitlines()[-1])

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        project.automation(
            "fix",
            skill="fix",
            workspace={"repository": f"file://{remote}", "base_branch": "main"},
            agent={"backend": "builtin", "base_url": model.base_url, "model": "scripted"},
        )
        async with running_daemon(project.config()) as d:
            first = await d.dispatcher.manual("fix", {}, "test")
            assert first.id is not None
            done = await wait_status(d, first.id, RunStatus.SUCCEEDED, timeout=60)
            assert done.summary == "none"
            # upstream moves on; the next run starts from the fetched commit
            (repo / "NEWS").write_text("fresh\n")
            git(repo, "add", "NEWS")
            git(repo, "commit", "-qm", "news")
            git(repo, "push", "-q", str(remote), "main")
            second = await d.dispatcher.manual("fix", {}, "test")
            assert second.id is not None
            done = await wait_status(d, second.id, RunStatus.SUCCEEDED, timeout=60)
            assert done.summary == "fresh"
    (mirror,) = (project.root / ".nightshift" / "mirrors").glob("*.git")  # cloned once
    assert git(mirror, "rev-parse", "origin/main") == git(repo, "rev-parse", "main")
    assert git(mirror, "branch", "--list", "nightshift/*") == ""  # runs that changed nothing


async def test_a_token_in_a_clone_url_never_shows(project: Project, repo: Path) -> None:
    async with ChatCompletionsDouble(lambda req, n: call("finish", summary="x")) as model:
        agent_project(project, repo, model)
        project.automation(
            "fix",
            skill="fix",
            workspace={"repository": "http://bot:s3cr3t-t0ken@127.0.0.1:9/org/repo.git"},
            agent={"backend": "builtin", "base_url": model.base_url, "model": "scripted"},
        )
        done, log = await run_fix(project, RunStatus.FAILED)
    assert done.summary.startswith("cannot make the workspace: git clone")
    assert "127.0.0.1:9/org/repo.git" in done.summary
    assert "s3cr3t" not in done.summary and "s3cr3t" not in str(log)


@pytest.mark.parametrize("allow_unsandboxed", [False, True])
@pytest.mark.usefixtures("no_sandbox")
async def test_without_a_sandbox_commands_are_refused_unless_allowed(
    project: Project, repo: Path, allow_unsandboxed: bool
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return call("run_command", command="echo ran > proof")
        return call("finish", summary=tool_results(req)[-1].splitlines()[0])

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model, allow_unsandboxed=allow_unsandboxed)
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=60)
            log = await events(d, run.id)
    if allow_unsandboxed:
        assert done.summary == "exit code 0"
    else:
        assert done.summary.startswith("refused: no sandbox is available")
        assert any("no sandbox" in e.get("text", "") for e in log if e["type"] == "message")


async def test_the_worktree_is_made_while_the_model_thinks_and_its_failure_fails_the_run(
    project: Project, tmp_path: Path
) -> None:
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()
    asked = asyncio.Event()

    async def script(request: dict[str, Any], n: int) -> dict[str, Any]:
        asked.set()
        return call("run_command", command="true")

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, not_a_repo, model)
        done, log = await run_fix(project, RunStatus.FAILED)
    assert asked.is_set()  # the model was asked before the workspace existed
    assert done.summary.startswith("cannot make the workspace: git worktree")
    assert "not a git repository" in done.summary
    assert not [e for e in log if e["type"] == "command"]  # nothing ran outside a worktree


PATCH = """\
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""
ESCAPE = """\
--- /dev/null
+++ b/../outside.txt
@@ -0,0 +1 @@
+escaped
"""


async def test_apply_patch_is_atomic_and_stays_in_the_worktree(
    project: Project, repo: Path
) -> None:
    def script(request: dict[str, Any], n: int) -> dict[str, Any]:
        return [
            call("apply_patch", patch=PATCH.replace("a - b", "a * b")),  # does not apply
            call("apply_patch", patch=ESCAPE),
            call("apply_patch", patch=PATCH),
            call("finish", summary="patched"),
        ][n - 1]

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        done, log = await run_fix(project, RunStatus.SUCCEEDED)
    results = tool_results(model.requests[3])
    assert results[0].startswith("error: the patch does not apply (nothing changed)")
    assert results[1].startswith("error: the patch does not apply") and "outside" in results[1]
    assert results[2] == "applied: 1 file(s) changed (calc.py)"
    assert not (repo.parent / "outside.txt").exists()
    assert [(e["path"], e["change"]) for e in log if e["type"] == "file_change"] == [
        ("calc.py", "modified")
    ]
    assert done.summary == "patched"
    assert git(repo, "show", f"nightshift/fix/{done.id}:calc.py") == FIXED


async def test_the_cost_budget_ends_the_run_from_the_reported_usage(
    project: Project, repo: Path
) -> None:
    from pydantic import ValidationError

    from daemon.spec import BuiltinAgent

    with pytest.raises(ValidationError, match="max_cost_usd needs price_per_mtok"):
        BuiltinAgent(backend="builtin", max_cost_usd=1.0)
    # The double reports 100 prompt and 20 completion tokens per call: $0.12 at $1000/1M.
    async with ChatCompletionsDouble(lambda req, n: call("post_update", text="more")) as model:
        agent_project(project, repo, model, max_cost_usd=0.2, price_per_mtok=[1000.0, 1000.0])
        async with running_daemon(project.config()) as d:
            run = await d.dispatcher.manual("fix", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.FAILED, timeout=30)
    assert done.summary == "cost budget of $0.20 used up ($0.2400)"
    assert len(model.requests) == 2
    assert (done.tokens, done.cost_usd) == (240, pytest.approx(0.24))  # kept on the run


async def test_an_untrusted_run_gets_no_network_whoever_would_approve(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return call("run_command", command="git push origin HEAD")
        return call("finish", summary=tool_results(req)[-1])

    async with ChatCompletionsDouble(script) as model:
        agent_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            # As a mention on a fork's pull request starts it.
            run = await d.store.call(d.store.create_run, NewRun("fix", "test", {}, untrusted=True))
            d.executor.enqueue(run)
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=30)
            assert await d.store.call(d.store.approvals, run.id) == []  # nobody was asked
    assert done.summary == "refused: this run works on a fork's pull request; it has no network"
