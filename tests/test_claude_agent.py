"""The Claude Code backend: the real, pinned Claude Code CLI against a scripted Messages API
(SSE) server, in real git worktrees."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.messages import MessagesDouble, text, tool_results, use, user_texts

from .helpers import BUGGY, events, require_cli, start_run, wait_status

require_cli("claude")

PY = sys.executable


def claude_project(project: Project, repo: Path, model: MessagesDouble, **agent: Any) -> None:
    project.skill("fix", None, body="Fix the failing test with the smallest change.")
    project.automation(
        "fix",
        skill="fix",
        workspace={"repository": str(repo)},
        agent={
            "backend": "claude",
            "base_url": model.base_url,
            "api_key": "sk-ant-test-123",
            "max_retries": 0,
            **agent,
        },
    )


def conversation(request: dict[str, Any]) -> str:
    return json.dumps(request["messages"])


async def test_claude_edits_and_tests_in_its_worktree(project: Project, repo: Path) -> None:
    tree: list[Path] = []

    def script(req: dict[str, Any], n: int) -> Any:
        calc = str(tree[0] / "calc.py")
        return [
            [use("Read", file_path=calc)],
            [use("Edit", file_path=calc, old_string="a - b", new_string="a + b")],
            [use("Bash", command=f"{PY} -m pytest -q -p no:cacheprovider test_calc.py")],
            [text("fixed add()")],
        ][n - 1]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            tree.append(project.root / ".nightshift" / "worktrees" / str(run_id))
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=90)
            log = await events(d, run_id)
    assert done.summary == "fixed add()"
    assert "Fix the failing test with the smallest change." in user_texts(model.requests[0])[-1]
    assert model.headers[0]["x-api-key"] == "sk-ant-test-123"
    (change,) = [e for e in log if e["type"] == "file_change"]
    assert change["path"] == "calc.py"
    (command,) = [e for e in log if e["type"] == "command"]
    assert command["exit_code"] == 0 and "1 passed" in command["output_tail"]
    (diff,) = [e for e in log if e["type"] == "artifact" and e["kind"] == "diff"]
    assert "-    return a - b" in diff["content"] and "+    return a + b" in diff["content"]
    assert (repo / "calc.py").read_text() == BUGGY  # the worktree changed, not the checkout


async def test_steering_mid_turn_reaches_the_next_model_call(project: Project, repo: Path) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return [use("Bash", command="touch started; while [ ! -f go ]; do sleep 0.01; done")]
        steered = "only patch versions" in conversation(req)
        return [text("plan: " + ("patch only" if steered else "all"))]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            tree = project.root / ".nightshift" / "worktrees" / str(run_id)
            await wait_for(lambda: (tree / "started").exists(), 30)
            await d.executor.steer(run_id, "only patch versions", "ann")
            await wait_for(
                lambda: [e for e in d.store.run_events(run_id) if e.type == "steer_received"]
            )
            (tree / "go").touch()
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    assert done.summary == "plan: patch only"
    second = model.requests[1]
    assert "[steering from ann] only patch versions" in conversation(second)
    assert len(tool_results(second)) == 1  # the command before the steering is still there
    assert len(model.requests) == 2  # taken into the running turn: no extra turn


@pytest.mark.parametrize("approve", [True, False])
async def test_an_ask_rule_becomes_an_approval_in_the_thread(
    project: Project, repo: Path, approve: bool
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return [use("Bash", command="git push origin HEAD")]
        return [text(f"answer: {tool_results(req)[-1].splitlines()[0]}")]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.WAITING, timeout=60)
            (request,) = await d.store.call(d.store.approvals, run_id)
            assert (request.action, request.description) == (
                "command",
                "run `git push origin HEAD`",
            )
            await d.executor.decide(run_id, None, approve, "ann", None if approve else "not today")
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
            log = await events(d, run_id)
    commands = [e for e in log if e["type"] == "command"]
    if approve:  # it ran, and failed: there is no remote
        assert [c["command"] for c in commands] == ["git push origin HEAD"]
        assert commands[0]["exit_code"] == 1
    else:
        assert done.summary == "answer: denied: not today"
        assert commands == []


async def test_the_agent_asks_through_the_request_approval_tool(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            assert any(t["name"] == "mcp__nightshift__request_approval" for t in req["tools"])
            return [
                use(
                    "mcp__nightshift__request_approval",
                    action="pull_request",
                    description="open a draft PR",
                )
            ]
        return [text(f"answer: {tool_results(req)[-1]}")]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.WAITING, timeout=60)
            await d.executor.decide(run_id, None, True, "ann", None)
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    assert done.summary == "answer: approved"


async def test_deny_rules_refuse_and_say_so(project: Project, repo: Path) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [use("Bash", command="sudo rm -rf /tmp/x")] if n == 1 else [text("gave up")]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
            log = await events(d, run_id)
            assert not await d.store.call(d.store.approvals, run_id)
    warnings = [e["text"] for e in log if e["type"] == "message" and e["level"] == "warning"]
    assert warnings == ["refused by policy: Bash sudo rm -rf /tmp/x"]


async def test_the_sandbox_refuses_writes_outside_and_the_network(
    project: Project, repo: Path
) -> None:
    outside = Path("/tmp") / f"nightshift-escape-{uuid.uuid4().hex}"
    written = Path("/tmp") / f"nightshift-escape-{uuid.uuid4().hex}"
    probe = f"{PY} -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:{{port}}/')\""

    def script(req: dict[str, Any], n: int) -> Any:
        return [
            [use("Bash", command=f"echo x > {outside}")],
            [use("Bash", command=probe.format(port=model.port))],
            [use("Write", file_path=str(written), content="x")],
            [use("Bash", command='echo private > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"')],
            [use("Bash", command=f"touch {outside}", dangerouslyDisableSandbox=True)],
            [text("tried")],
        ][n - 1]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.WAITING, timeout=60)
            (edit_request,) = await d.store.call(d.store.approvals, run_id)
            await d.executor.decide(run_id, None, False, "ann", "not there")
            await wait_for(lambda: len(model.requests) == 5, timeout=60)
            assert not outside.exists()  # nothing got out before the approval
            await wait_status(d, run_id, RunStatus.WAITING, timeout=60)
            (_, escape_request) = await d.store.call(d.store.approvals, run_id)
            await d.executor.decide(run_id, None, True, "ann", None)
            await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    write, network, edit, scratch, _ = tool_results(model.requests[-1])
    assert "Read-only file system" in write
    assert "URLError" in network
    assert edit_request.action == "Write" and str(written) in edit_request.description
    assert "not there" in edit and not written.exists()
    assert "private" in scratch  # the run's own temp folder is writable
    assert "outside the sandbox" in escape_request.description
    assert outside.exists()  # it ran unsandboxed, with an approval on record
    outside.unlink()


@pytest.mark.parametrize("allow_unsandboxed", [False, True])
@pytest.mark.usefixtures("no_sandbox")
async def test_without_a_sandbox_commands_are_refused_unless_allowed(
    project: Project, repo: Path, allow_unsandboxed: bool
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [use("Bash", command="echo ran > proof")] if n == 1 else [text("done")]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model, allow_unsandboxed=allow_unsandboxed)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
            log = await events(d, run_id)
    warnings = [e["text"] for e in log if e["type"] == "message" and e["level"] == "warning"]
    diffs = [e["content"] for e in log if e["type"] == "artifact" and e["kind"] == "diff"]
    assert warnings[0].startswith("no sandbox (bubblewrap) here")
    if allow_unsandboxed:
        assert "+ran" in diffs[0]
    else:  # Claude Code is given no Bash tool at all, and says so to the agent
        assert "Bash exists but is not enabled" in tool_results(model.requests[-1])[0]
        assert "refused" in warnings[0] and not diffs


@pytest.mark.parametrize(
    ("status", "expected"),
    [(500, "500"), (401, "401")],
)
async def test_a_failing_model_server_ends_the_run_clearly(
    project: Project, repo: Path, status: int, expected: str
) -> None:
    body = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    async with MessagesDouble(lambda req, n: (status, body)) as model:
        claude_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            done = await wait_status(d, run_id, RunStatus.FAILED, timeout=60)
    assert done.summary.startswith("claude: ") and expected in done.summary


async def test_an_unreachable_model_server_ends_the_run(project: Project, repo: Path) -> None:
    async with MessagesDouble(lambda req, n: [text("unused")]) as model:
        pass  # nothing listens on its port any more
    claude_project(project, repo, model)
    async with running_daemon(project.config()) as d:
        run_id = await start_run(d)
        done = await wait_status(d, run_id, RunStatus.FAILED, timeout=60)
    assert "connect" in done.summary.lower()


async def test_the_cost_budget_ends_the_run(project: Project, repo: Path) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [use("Bash", command="true")] if n < 50 else [text("done")]

    async with MessagesDouble(script) as model:
        claude_project(project, repo, model, max_cost_usd=0.0001)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            done = await wait_status(d, run_id, RunStatus.FAILED, timeout=60)
    assert "budget" in done.summary.lower()
    assert len(model.requests) < 50
    assert done.cost_usd >= 0.0001 and done.tokens > 0  # the session's cost, kept on the run
