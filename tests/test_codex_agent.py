"""The Codex backend: the real, pinned Codex CLI against a scripted Responses API (SSE) server,
working in real git worktrees inside Codex's own sandbox."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.responses import (
    ResponsesDouble,
    failed,
    mcp,
    message,
    reasoning,
    shell,
    tool_outputs,
    tool_search,
    user_texts,
)

from .helpers import BUGGY, FIXED, events, require_cli, start_run, wait_status

require_cli("codex")

PY = sys.executable


def codex_project(project: Project, repo: Path, model: ResponsesDouble, **agent: Any) -> None:
    project.skill("fix", None, body="Fix the failing test with the smallest change.")
    project.automation(
        "fix",
        skill="fix",
        workspace={"repository": str(repo)},
        agent={"backend": "codex", "base_url": model.base_url, **agent},
    )


async def test_codex_edits_and_tests_in_its_worktree(project: Project, repo: Path) -> None:
    # -B: the fix is the same size as the bug and lands within the same second, so a cached
    # .pyc from the first run would pass for fresh and the second run would test the old code.
    def script(req: dict[str, Any], n: int) -> Any:
        return [
            [
                reasoning("**Running the tests first**\n\nThe test should show the bug."),
                shell(f"{PY} -B -m pytest -q -p no:cacheprovider test_calc.py"),
            ],
            [shell(f"printf '{FIXED.replace(chr(10), chr(92) + 'n')}' > calc.py")],
            [shell(f"{PY} -B -m pytest -q -p no:cacheprovider test_calc.py")],
            [message("fixed add()")],
        ][n - 1]

    async with ResponsesDouble(script) as model:
        codex_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=90)
            log = await events(d, run_id)
    assert done.summary == "fixed add()"
    first = model.requests[0]
    assert "Fix the failing test with the smallest change." in "\n".join(user_texts(first))
    commands = [e for e in log if e["type"] == "command"]
    assert [c["exit_code"] for c in commands] == [1, 0, 0]
    assert commands[0]["command"].endswith("test_calc.py")  # unwrapped from bash -lc
    assert "1 passed" in commands[2]["output_tail"]
    (diff,) = [e for e in log if e["type"] == "artifact" and e["kind"] == "diff"]
    assert "-    return a - b" in diff["content"] and "+    return a + b" in diff["content"]
    assert (repo / "calc.py").read_text() == BUGGY  # the worktree changed, not the checkout
    assert model.headers[0].get("authorization") is None  # no key configured, none sent
    steps = [(e["title"], e.get("detail")) for e in log if e["type"] == "step"]
    assert ("Running the tests first", "The test should show the bug.") in steps


async def test_steering_interrupts_between_items_and_resumes_the_thread(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return [shell("touch started; while [ ! -f go ]; do sleep 0.01; done")]
        steered = any("only patch versions" in t for t in user_texts(req))
        return [message("plan: " + ("patch only" if steered else "all"))]

    async with ResponsesDouble(script) as model:
        codex_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            tree = project.root / ".nightshift" / "worktrees" / str(run_id)
            await wait_for(lambda: (tree / "started").exists(), 30)
            await d.executor.steer(run_id, "only patch versions", "ann")
            (tree / "go").touch()
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    assert done.summary == "plan: patch only"
    last = model.requests[-1]
    texts = user_texts(last)
    assert texts[-1] == "[steering from ann] only patch versions"
    assert any("Fix the failing test" in t for t in texts)  # the task is still in context
    assert len(tool_outputs(last)) == 1  # and so is the command it ran before


@pytest.mark.parametrize("approve", [True, False])
async def test_approval_through_nightshifts_mcp_tool(
    project: Project, repo: Path, approve: bool
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return [tool_search("nightshift request approval")]
        if n == 2:
            return [mcp("nightshift", "request_approval", action="push", description="push fix")]
        return [message(f"answer: {tool_outputs(req)[-1].splitlines()[-1]}")]

    async with ResponsesDouble(script) as model:
        codex_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.WAITING, timeout=60)
            (request,) = await d.store.call(d.store.approvals, run_id)
            assert (request.action, request.description) == ("push", "push fix")
            await d.executor.decide(run_id, None, approve, "ann", None if approve else "not today")
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    assert done.summary == ("answer: approved" if approve else "answer: denied: not today")


async def test_the_sandbox_refuses_writes_outside_and_the_network(
    project: Project, repo: Path
) -> None:
    outside = Path("/tmp") / f"nightshift-escape-{uuid.uuid4().hex}"
    probe = f"{PY} -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:{{port}}/')\""

    def script(req: dict[str, Any], n: int) -> Any:
        if n == 1:
            return [shell(f"echo x > {outside}")]
        if n == 2:
            return [shell(probe.format(port=model.port))]
        if n == 3:
            return [shell('echo private > "$TMPDIR/scratch" && cat "$TMPDIR/scratch"')]
        return [message("tried")]

    async with ResponsesDouble(script) as model:
        codex_project(project, repo, model)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
    write, network, scratch = tool_outputs(model.requests[-1])
    assert "Read-only file system" in write and not outside.exists()
    assert "exited with code 1" in network and "URLError" in network
    assert "private" in scratch  # the run's own temp folder is writable
    assert len(model.requests) == 4  # the probe never reached the server


async def test_deny_commands_are_refused_and_the_agent_hears_why(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [
            [shell("git status --short && git push origin main")],
            [shell("touch other.txt")],
            [message("carried on")],
        ][n - 1]

    async with ResponsesDouble(script) as model:
        codex_project(project, repo, model, deny_commands=["git push", "sudo"])
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=60)
            log = await events(d, run_id)
    push, touch = tool_outputs(model.requests[-1])
    assert "rejected: the automation denies `git push`" in push  # inside `a && b` too
    assert "exited with code 0" in touch  # the agent carried on
    # The thread shows the refusal where it happened (Codex's --json output has no item for
    # it), as it shows Claude Code's and our loop's.
    seen = [
        e["text"] if e["type"] == "message" else e["command"]
        for e in log
        if e["type"] == "command" or (e["type"] == "message" and e["level"] == "warning")
    ]
    assert seen == [
        "refused by policy: `git status --short && git push origin main` "
        "(the automation denies `git push`)",
        "touch other.txt",
    ]
    (diff,) = [e for e in log if e["type"] == "artifact" and e["kind"] == "diff"]
    assert "other.txt" in diff["content"]
    assert done.summary == "carried on"
    rules = project.root / ".nightshift" / "agents" / "codex" / "home" / "fix" / "rules"
    assert [p.name for p in rules.iterdir()] == ["nightshift.rules"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ((500, {"error": {"message": "boom"}}), "codex"),
        ((401, {"error": {"message": "bad key"}}), "401"),
        (failed("overloaded"), "overloaded"),
    ],
)
async def test_a_failing_model_server_ends_the_run_clearly(
    project: Project, repo: Path, reply: Any, expected: str
) -> None:
    async with ResponsesDouble(lambda req, n: reply) as model:
        codex_project(project, repo, model, api_key="sk-test-123", max_retries=0)
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d)
            done = await wait_status(d, run_id, RunStatus.FAILED, timeout=90)
    assert expected in done.summary
    assert model.headers[0]["authorization"] == "Bearer sk-test-123"


async def test_an_unreachable_model_server_ends_the_run(project: Project, repo: Path) -> None:
    async with ResponsesDouble(lambda req, n: [message("unused")]) as model:
        url = model.base_url  # closed when the block ends: nothing listens there any more
    project.skill("fix", None, body="x")
    project.automation(
        "fix",
        skill="fix",
        workspace={"repository": str(repo)},
        agent={
            "backend": "codex",
            "base_url": url,
            "unreachable_after": "1s",
            "max_retries": 0,
        },
    )
    async with running_daemon(project.config()) as d:
        run_id = await start_run(d)
        done = await wait_status(d, run_id, RunStatus.FAILED, timeout=90)
    assert "model server unreachable" in done.summary


DELEGATING = """\
from daemon.skillkit import SkillRun

run = SkillRun.start()
answer = run.delegate("Which file holds add()? Answer with the file name only.")
run.finish("succeeded", f"{answer.status}: {answer.summary}")
"""


async def test_a_script_hands_its_judgement_to_codex(project: Project, repo: Path) -> None:
    require_cli("codex")

    def script(req: dict[str, Any], n: int) -> Any:
        return [[shell("env; ls")], [message("calc.py")]][n - 1]

    async with ResponsesDouble(script) as model:
        project.skill("ask", DELEGATING, body="Answer questions about this repository.")
        project.automation(
            "ask",
            skill="ask",
            workspace={"repository": str(repo)},
            agent={
                "backend": "script",
                "delegate": {"backend": "codex", "base_url": model.base_url},
            },
            env={"SECRET_FOR_THE_SCRIPT": "only-the-script-sees-this"},
        )
        async with running_daemon(project.config()) as d:
            run_id = await start_run(d, "ask")
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=90)
            log = await events(d, run_id)
    assert done.summary == "succeeded: calc.py"
    prompt = "\n".join(user_texts(model.requests[0]))
    assert "Answer questions about this repository." in prompt  # the skill's instructions
    assert "Which file holds add()?" in prompt  # and the script's task
    (ls,) = [e for e in log if e["type"] == "command"]
    assert "calc.py" in ls["output_tail"]  # Codex worked in the run's worktree
    assert "PATH=" in ls["output_tail"]  # the agent's environment, printed by `env`
    assert "only-the-script-sees-this" not in ls["output_tail"]  # the run's env stays out


def test_refusals_are_read_from_the_session_log_as_it_grows(tmp_path: Path) -> None:
    import json

    from daemon.agents.codex import _SessionLog

    folder = tmp_path / "sessions" / "2026" / "11" / "30"
    folder.mkdir(parents=True)
    log = folder / "rollout-2026-11-30T10-00-00-t1.jsonl"

    def item(payload: dict[str, Any]) -> bytes:
        return json.dumps({"type": "response_item", "payload": payload}).encode() + b"\n"

    call = {"type": "function_call", "call_id": "c1", "arguments": '{"cmd": "sudo rm x"}'}
    output = {
        "type": "function_call_output",
        "call_id": "c1",
        "output": 'exec_command failed: CreateProcess { message: "Rejected(\\"`/bin/bash -lc '
        "'sudo rm x'` rejected: the automation denies `sudo`\\\")\" }",
    }
    ran = {"type": "function_call_output", "call_id": "c2", "output": "Process exited with code 0"}
    whole = item(call) + item(output)
    log.write_bytes(whole[:-20])  # Codex is still writing the refusal's line
    session = _SessionLog(tmp_path / "sessions")
    assert session.refusals("t0") == []  # another thread's log: none yet
    assert session.refusals("t1") == []
    with log.open("ab") as out:
        out.write(whole[-20:] + item(ran))
    assert session.refusals("t1") == [("sudo rm x", "the automation denies `sudo`")]
    assert session.refusals("t1") == []  # each once
