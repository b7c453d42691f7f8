"""The bundled nightly-deps automation end to end: PyPI and npm doubles, a bare repository as
the remote, real `npm install --package-lock-only` and pytest per group, the GitHub double with
an open pull request and a per-hour limit, and steering plus approval in the Slack thread."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.github import GitHubDouble
from daemon.testing.packages import PackageIndexDouble
from daemon.testing.slack import SlackDouble

from .bundled import ANN, config, fire_cron, install
from .helpers import git, publish, wait_event, wait_status
from .test_bundled_issue_triage import final_text
from .test_slack_replies import approval_message, parent_of

REPO = "acme/web"
CHECK = """\
from pathlib import Path


def test_our_code_is_not_ready_for_rich_14():
    pins = dict(line.split("==") for line in Path(__file__).with_name("requirements.txt").read_text().split())
    assert int(pins["rich"].split(".")[0]) < 14
"""


def project_repo(tmp_path: Path, registry: str) -> Path:
    """A Python + npm project pushed to a bare remote; its lock made by real npm."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "requirements.txt").write_text("httpx==0.27.0\nrich==13.7.0\nclick==8.1.0\n")
    (work / "test_deps.py").write_text(CHECK)
    package = {
        "name": "web",
        "version": "1.0.0",
        "private": True,
        "dependencies": {"left-pad": "^1.1.0"},
        "devDependencies": {"is-number": "^6.0.0"},
    }
    (work / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund",
         "--registry", registry],
        cwd=work, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return publish(work, tmp_path / "remote.git")


async def test_grouped_updates_steered_approved_and_limited(
    project: Project, slack: SlackDouble, gh: GitHubDouble, tmp_path: Path
) -> None:
    async with PackageIndexDouble() as index:
        index.python("httpx", "0.27.0", "0.27.2", "0.28.1", "0.29.0rc1",
                     changelog="https://github.com/encode/httpx/blob/master/CHANGELOG.md")  # fmt: skip
        index.python("rich", "13.7.0", "13.7.1", "13.9.4", "14.0.0")
        index.python("click", "8.1.0")
        index.node("left-pad", "1.1.0", repository="git+https://github.com/left-pad/left-pad.git")
        index.node("is-number", "6.0.0")
        remote = await asyncio.to_thread(project_repo, tmp_path, index.npm_url)
        index.node("left-pad", "1.1.0", "1.3.0", repository="git+https://github.com/left-pad/left-pad.git")  # fmt: skip
        index.node("is-number", "6.0.0", "7.0.0")
        repo = gh.repo(REPO, git_dir=remote)
        held = repo.pull("nightshift/deps/npm-is-number-7", title="Update npm: is-number 7")
        install(
            project,
            "nightly-deps",
            inputs={
                "repository": REPO,
                "pypi_url": index.pypi_url,
                "npm_registry": index.npm_url,
                "prs_per_hour": 2,
            },
            workspace={"repository": f"file://{remote}"},
        )
        async with running_daemon(config(project, slack, gh)) as d:
            await wait_for(lambda: slack.sockets)
            run_id = await fire_cron(d, "nightly-deps", datetime(2026, 11, 25, 4, 0, tzinfo=UTC))
            parent = await parent_of(slack, run_id)
            first = await approval_message(slack, parent)
            plan = first.text
            assert "*npm non-major updates*: left-pad ^1.1.0 → ^1.3.0 — tests pass" in plan
            assert (
                f"*npm: is-number 7*: is-number ^6.0.0 → ^7.0.0 — skipped: #{held} is open" in plan
            )
            assert ("*Python non-major updates*: httpx 0.27.0 → 0.28.1, "
                    "rich 13.7.0 → 13.9.4 — tests pass") in plan  # fmt: skip
            assert "*Python: rich 14*: rich 13.7.0 → 14.0.0 — tests fail" in plan
            assert "click" not in plan and "rc1" not in plan
            await slack.reply(parent, ANN, "skip rich, we pin it on purpose")
            await wait_event(d, run_id, "steer_received")
            await slack.click(first, ANN, "approve")
            await wait_event(d, run_id, "message", text="re-planning as steered: skip rich")
            second = (
                await wait_for(
                    lambda: [m for m in slack.thread(parent) if "actions" in str(m.blocks)][1:], 60
                )
            )[0]
            assert "*Python non-major updates*: httpx 0.27.0 → 0.28.1 — tests pass" in second.text
            assert "rich" not in second.text.split("?", 1)[1]
            await slack.click(second, ANN, "approve")
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=90)
            await wait_for(lambda: "draft pull request(s) opened" in final_text(parent))
    assert done.summary.startswith("1 draft pull request(s) opened")
    assert "*npm non-major updates*: left-pad ^1.1.0 → ^1.3.0 — opened #" in done.summary
    assert "*Python non-major updates*: httpx 0.27.0 → 0.28.1 — deferred to the next run" in (
        done.summary
    )
    pulls = [p for p in repo.pulls.values() if p["number"] != held]
    assert [(p["head"]["ref"], p["draft"]) for p in pulls] == [
        ("nightshift/deps/npm-non-major", True)
    ]
    assert "https://github.com/left-pad/left-pad/releases" in pulls[0]["body"]
    branch = "nightshift/deps/npm-non-major"
    lock = json.loads(git(remote, "show", f"{branch}:package-lock.json"))
    assert lock["packages"]["node_modules/left-pad"]["version"] == "1.3.0"
    assert json.loads(git(remote, "show", f"{branch}:package.json"))["dependencies"] == {
        "left-pad": "^1.3.0"
    }


def python_locked_repo(tmp_path: Path, simple: str) -> Path:
    """A project whose pyproject is locked by uv and whose requirements.txt is compiled by
    pip-tools, both made by the real tools against the index double."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    work = tmp_path / "work"
    work.mkdir()
    (work / "pyproject.toml").write_text(
        '[project]\nname = "web"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["httpx>=0.27.0", "click==8.1.0"]\n\n'
        f'[[tool.uv.index]]\nurl = "{simple}"\ndefault = true\n'
    )
    (work / "requirements.in").write_text(f"--index-url {simple}\nrich\n")
    (work / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    for argv in ([str(bin_dir / "uv"), "lock"], [str(bin_dir / "pip-compile"), "--quiet",
                 "--no-strip-extras", "requirements.in"]):  # fmt: skip
        subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True, timeout=120)
    return publish(work, tmp_path / "remote.git")


def locked(remote: Path, branch: str) -> dict[str, str]:
    lock = tomllib.loads(git(remote, "show", f"{branch}:uv.lock"))
    return {p["name"]: p["version"] for p in lock["package"]}


async def test_uv_and_pip_tools_locks_are_regenerated_by_their_own_tools(
    project: Project, slack: SlackDouble, gh: GitHubDouble, tmp_path: Path
) -> None:
    async with PackageIndexDouble() as index:
        index.python("httpx", "0.27.0")
        index.python("click", "8.1.0")
        index.python("rich", "13.7.0")
        remote = await asyncio.to_thread(python_locked_repo, tmp_path, index.simple_url)
        index.python("httpx", "0.27.0", "0.27.2", "0.28.1")
        index.python("click", "8.1.0", "8.1.8", "9.0.0")
        index.python("rich", "13.7.0", "13.9.4")
        repo = gh.repo(REPO, git_dir=remote)
        install(
            project,
            "nightly-deps",
            inputs={"repository": REPO, "pypi_url": index.pypi_url, "prs_per_hour": 5},
            workspace={"repository": f"file://{remote}"},
            env={"PIP_CONFIG_FILE": os.devnull},  # this machine's pip config stays out
        )
        async with running_daemon(config(project, slack, gh)) as d:
            await wait_for(lambda: slack.sockets)
            run = await d.dispatcher.manual("nightly-deps", {}, "test")
            assert run.id is not None
            plan = await approval_message(slack, await parent_of(slack, run.id))
            assert ("*Python non-major updates*: rich 13.7.0 → 13.9.4, httpx 0.27.0 → 0.28.1, "
                    "click 8.1.0 → 8.1.8 — tests pass") in plan.text  # fmt: skip
            assert "*Python: click 9*: click 8.1.0 → 9.0.0 — tests pass" in plan.text
            await slack.click(plan, ANN, "approve")
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=120)
    assert done.summary.startswith("2 draft pull request(s) opened"), done.summary
    assert {p["head"]["ref"] for p in repo.pulls.values()} == {
        "nightshift/deps/python-non-major",
        "nightshift/deps/python-click-9",
    }
    minor, major = "nightshift/deps/python-non-major", "nightshift/deps/python-click-9"
    assert locked(remote, minor).items() >= {"httpx": "0.28.1", "click": "8.1.8"}.items()
    assert '"click==8.1.8"' in git(remote, "show", f"{minor}:pyproject.toml")
    assert "rich==13.9.4" in git(remote, "show", f"{minor}:requirements.txt")
    assert locked(remote, major)["click"] == "9.0.0"
    assert "rich==13.7.0" in git(remote, "show", f"{major}:requirements.txt")
