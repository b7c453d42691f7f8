"""The bundled ci-failure-fix automation end to end: a signed workflow_run webhook, the GitHub
API double with a bare repository as the remote, the scripted model fixing the code in a real
worktree, real pytest before and after, steering and approval in the Slack thread, and the
pushed branch and draft pull request as the effect."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.github import FakeRepo, GitHubDouble
from daemon.testing.models import ChatCompletionsDouble, call, say
from daemon.testing.slack import SlackDouble

from .bundled import ANN, HOOK_SECRET, config, fixture, install
from .helpers import FIXED, events, git, make_remote, wait_event, wait_status
from .test_bundled_issue_triage import final_text, no_secret_leaked
from .test_slack_replies import approval_message, parent_of
from .test_webhooks import decisions, deliver

REPO = "octo-org/octo-repo"
LOG = (
    "2026-11-24T01:00:00.0000000Z ============ FAILURES ============\n"
    "2026-11-24T01:00:01.0000000Z FAILED test_calc.py::test_add - assert -1 == 5\n"
    "2026-11-24T01:00:01.0000000Z 1 failed in 0.01s\n"
)


def failed_run(gh: GitHubDouble, remote: Path, sha: str) -> tuple[FakeRepo, dict[str, Any]]:
    repo = gh.repo(REPO, git_dir=remote)
    run = repo.workflow_run(
        head_sha=sha,
        jobs=[
            {"name": "lint", "conclusion": "success", "steps": [("ruff", "success")]},
            {"name": "test", "steps": [("checkout", "success"), ("pytest", "failure")], "log": LOG},
        ],
    )
    return repo, run


def webhook(run: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = fixture("workflow_run.completed")
    fields = {key: run[key] for key in ("id", "head_sha", "head_branch", "html_url")}
    payload["workflow_run"].update({**fields, "conclusion": "failure", **changes})
    return payload


async def test_failed_run_fixed_steered_approved_and_proposed(
    project: Project, slack: SlackDouble, gh: GitHubDouble, tmp_path: Path
) -> None:
    remote, work = make_remote(tmp_path)
    sha = git(work, "rev-parse", "HEAD").strip()
    repo, run = failed_run(gh, remote, sha)
    steered = asyncio.Event()

    async def model(request: dict[str, Any], n: int) -> dict[str, Any]:
        said = " ".join(str(m.get("content")) for m in request["messages"])
        if n == 1:
            assert "FAILED test_calc.py::test_add" in said  # the diagnosis reached the agent
            await steered.wait()
            return call("read_file", path="calc.py")
        if n == 2:
            extra = "" if "keep the diff minimal" in said else "\n\ndef unused():\n    pass\n"
            return call("write_file", path="calc.py", content=FIXED + extra)
        return say("add() subtracted instead of adding; it now adds.")

    async with ChatCompletionsDouble(model) as llm:
        install(
            project,
            "ci-failure-fix",
            agent={
                "delegate": {"base_url": llm.base_url, "api_key": None, "retry_backoff": "10ms"}
            },
            workspace={"repository": f"file://{remote}"},
        )
        async with running_daemon(config(project, slack, gh)) as d:
            await wait_for(lambda: slack.sockets)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
                resp = await deliver(client, "workflow_run", webhook(run), secret=HOOK_SECRET)
                assert resp.status_code == 202, resp.text
                run_id = (await wait_for(lambda: d.store.list_runs(limit=1)))[0].id
                assert run_id is not None
                parent = await parent_of(slack, run_id)
                await wait_for(lambda: llm.requests, 30)
                await slack.reply(parent, ANN, "keep the diff minimal please")
                await wait_event(d, run_id, "steer_received")
                steered.set()
                request = await approval_message(slack, parent)
                assert "Push nightshift/ci-fix/" in request.text
                log = await events(d, run_id)
                diff = next(e for e in log if e["type"] == "artifact" and e["kind"] == "diff")
                assert "+    return a + b" in diff["content"] and "unused" not in diff["content"]
                reproduced = [e for e in log if e["type"] == "command"]
                assert reproduced[0]["exit_code"] == 1 and reproduced[1]["exit_code"] == 0
                await slack.click(request, ANN, "approve")
                done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=30)
                await wait_for(lambda: "opened draft pull request" in final_text(parent))
                await no_secret_leaked(d, slack, run_id)
                # The same failed commit again (a re-run of the workflow, which failed
                # again): no second attempt. (The same bytes again are a replay; see
                # test_hostile_requests.)
                rerun = webhook(run, run_attempt=2, updated_at="2030-01-01T00:00:00Z")
                again = await deliver(client, "workflow_run", rerun, secret=HOOK_SECRET)
                assert again.status_code == 202
                # Never on its own branches: a failure on a nightshift/ branch starts nothing.
                own = webhook(run, head_branch=f"nightshift/ci-fix/{sha[:12]}", head_sha="f" * 40)
                assert (await deliver(client, "workflow_run", own, secret=HOOK_SECRET)).is_success
                hooks = await wait_for(lambda: d.store.list_events(source="github")[2:] and
                                       d.store.list_events(source="github"))  # fmt: skip
                own_said, again_said = [decisions(d, e.id or 0) for e in hooks[:2]]
                assert again_said["ci-failure-fix"].startswith("deduplicated: key ")
                assert own_said["ci-failure-fix"].startswith("guard: ")
                assert len(d.store.list_runs()) == 1
    branch = f"nightshift/ci-fix/{sha[:12]}"
    assert git(remote, "show", f"{branch}:calc.py") == FIXED
    (pull,) = repo.pulls.values()
    assert pull["draft"] and pull["head"]["ref"] == branch and pull["base"]["ref"] == "main"
    assert run["html_url"] in pull["body"] and "it now adds" in pull["body"]
    assert done.summary == f"opened draft pull request #{pull['number']}: {pull['html_url']}"
    assert "test" in json.dumps(llm.requests[0])


async def test_one_attempt_per_head_commit_and_a_diagnosis_without_a_model(
    project: Project, slack: SlackDouble, gh: GitHubDouble, tmp_path: Path
) -> None:
    remote, work = make_remote(tmp_path)
    sha = git(work, "rev-parse", "HEAD").strip()
    repo, run = failed_run(gh, remote, sha)
    install(
        project,
        "ci-failure-fix",
        agent={"delegate": None},
        workspace={"repository": f"file://{remote}", "isolate": True},
    )
    async with running_daemon(config(project, slack, gh)) as d:
        inputs = {"repository": REPO, "run_id": run["id"]}
        first = await d.dispatcher.manual("ci-failure-fix", inputs, "test")
        assert first.id is not None
        done = await wait_status(d, first.id, RunStatus.SUCCEEDED, timeout=30)
        assert done.summary.startswith("diagnosed (no delegate agent to fix it):")
        assert "step “pytest” failed" in done.summary and "test_calc.py::test_add" in done.summary
        repo.pull(f"nightshift/ci-fix/{sha[:12]}", state="closed")
        second = await d.dispatcher.manual("ci-failure-fix", inputs, "test")
        assert second.id is not None
        skipped = await wait_status(d, second.id, RunStatus.SUCCEEDED, timeout=30)
    assert skipped.summary.startswith(f"skipped: {sha[:12]} had its attempt already")
