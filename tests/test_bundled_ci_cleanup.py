"""The bundled ci-cleanup automation end to end: workflow runs with a flake, real branches in a
bare repository (one with an old commit date), closed pull requests, and three approvals in the
Slack thread with steering that keeps a branch."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.github import GitHubDouble
from daemon.testing.slack import Posted, SlackDouble

from .bundled import ANN, config, fire_cron, install
from .helpers import make_remote, wait_event, wait_status
from .test_bundled_issue_triage import final_text
from .test_slack_replies import parent_of

REPO = "acme/api"
FLAKY_LOG = "2026-11-20T03:00:00.0000000Z FAILED tests/test_net.py::test_timeout - TimeoutError\n"


def branch(work: Path, name: str, *, date: str | None = None) -> None:
    """Push a branch with one commit of its own (dated `date` when given)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)

    def run(*args: str) -> None:
        subprocess.run(["git", "-C", str(work), *args], check=True, env=env, capture_output=True)

    run("checkout", "-q", "-B", name, "main")
    (work / f"{name.replace('/', '-')}.txt").write_text(name)
    run("add", ".")
    run("commit", "-qm", name)
    run("push", "-q", "origin", name)
    run("checkout", "-q", "main")


async def approval(slack: SlackDouble, parent: Posted, index: int) -> Posted:
    found = await wait_for(
        lambda: [m for m in slack.thread(parent) if "actions" in str(m.blocks)][index:], 20
    )
    return found[0]


async def test_flakes_stale_and_closed_branches_each_on_approval(
    project: Project, slack: SlackDouble, gh: GitHubDouble, tmp_path: Path
) -> None:
    remote, work = make_remote(tmp_path)
    branch(work, "nightshift/deps/old", date="2026-01-02T03:04:05Z")
    branch(work, "nightshift/deps/keep-me", date="2026-01-02T03:04:05Z")
    branch(work, "nightshift/ci-fix/recent")
    branch(work, "feature/done")
    repo = gh.repo(REPO, git_dir=remote)
    merged = repo.pull("feature/done", state="closed", merged_at="2026-11-20T00:00:00Z")
    job = {"name": "test", "steps": [("pytest", "failure")], "log": FLAKY_LOG}
    repo.workflow_run(head_sha="a" * 40, jobs=[job], created_at="2026-11-20T03:00:00Z")
    repo.workflow_run(head_sha="a" * 40, conclusion="success", created_at="2026-11-20T03:10:00Z")
    failing = {"name": "test", "steps": [("pytest", "failure")], "log": "FAILED tests/t.py::real"}
    repo.workflow_run(head_sha="b" * 40, jobs=[failing], created_at="2026-11-21T03:00:00Z")
    install(project, "ci-cleanup", inputs={"repository": REPO})
    async with running_daemon(config(project, slack, gh)) as d:
        await wait_for(lambda: slack.sockets)
        run_id = await fire_cron(d, "ci-cleanup", datetime(2026, 11, 25, 5, 30, tzinfo=UTC))
        parent = await parent_of(slack, run_id)
        flaky = await approval(slack, parent, 0)
        assert "tests/test_net.py::test_timeout" in flaky.text and "real" not in flaky.text
        summary = next(m.text for m in slack.thread(parent) if "Delete nightshift" in m.text)
        assert "nightshift/deps/old" in summary and "nightshift/deps/keep-me" in summary
        assert "recent" not in summary
        assert f"feature/done — #{merged} merged" in summary
        await slack.reply(parent, ANN, "keep nightshift/deps/keep-me, I still need it")
        await wait_event(d, run_id, "steer_received")
        await slack.click(flaky, ANN, "approve")
        stale = await approval(slack, parent, 1)
        assert "nightshift/deps/old" in stale.text and "keep-me" not in stale.text
        await slack.click(stale, ANN, "approve")
        await approval(slack, parent, 2)
        await slack.reply(parent, ANN, "deny keep them for now")
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=30)
        await wait_for(lambda: "CI clean-up of" in final_text(parent))
    assert done.summary == (
        f"CI clean-up of {REPO}: flaky: opened #{merged + 1}; stale: deleted 1 branch(es); "
        "closed: not applied: keep them for now"
    )
    issue = repo.issues[merged + 1]
    assert issue["title"] == "Flaky tests (found by nightshift)"
    assert [x["name"] for x in issue["labels"]] == ["flaky"]
    assert "tests/test_net.py::test_timeout" in issue["body"]
    assert repo.branch_names() == {
        "main",
        "nightshift/deps/keep-me",
        "nightshift/ci-fix/recent",
        "feature/done",
    }
