"""Orchestration overhead of our agent loop (issue 5): ≤ 1.10×.

The same scripted task — 50 tool calls (`run_command true`), then `finish` — is run by the
built-in backend bare (driven directly: no store, no reporters, no worktree) and under the
daemon (store, console and Slack reporters on, in its worktree). Both talk to the same scripted
Chat Completions server; the figure is the daemon's wall time over the bare one, best of 3 each.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

from daemon.agents import BuiltinBackend, RunContext
from daemon.loader import Loader
from daemon.runs import Finished, RunStatus
from daemon.testing import Project, running_daemon
from daemon.testing.models import ChatCompletionsDouble, call
from daemon.testing.slack import SlackDouble

from ._util import Result

CALLS = 50


def script(req: dict[str, Any], n: int) -> Any:
    turns = sum(1 for m in req["messages"] if m["role"] == "assistant")
    return call("run_command", command="true") if turns < CALLS else call("finish", summary="done")


def repo(root: Path) -> Path:
    path = root / "repo"
    path.mkdir()
    (path / "README").write_text("x\n")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return path


async def run() -> list[Result]:
    bare_times, daemon_times = [], []
    async with ChatCompletionsDouble(script) as model, SlackDouble() as slack:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            project = Project(root / "p")
            project.skill("task", None, body="Run the command 50 times.")
            project.automation(
                "task",
                skill="task",
                workspace={"repository": str(repo(root))},
                report={"channel": "#ops"},
                agent={
                    "backend": "builtin",
                    "base_url": model.base_url,
                    "model": "m",
                    "max_steps": 100,
                },
            )
            catalog = Loader(project.automations, project.skills).load()
            automation, skill = catalog.automations["task"], catalog.skills["task"]
            for i in range(3):
                work = root / f"bare{i}"
                work.mkdir()
                ctx = RunContext(
                    run_id=i,
                    attempt=1,
                    automation=automation,
                    skill=skill,
                    inputs={},
                    event={},
                    workdir=work,
                )
                t0 = time.perf_counter()
                agent = await BuiltinBackend().start(ctx)
                async for event in agent.events():
                    if isinstance(event, Finished):
                        assert event.status == RunStatus.SUCCEEDED, event.summary
                bare_times.append(time.perf_counter() - t0)
            config = project.config(
                console=True,
                logging={"level": "warning"},
                slack={
                    "bot_token": slack.bot_token,
                    "base_url": slack.base_url,
                    "min_interval": "50ms",
                },
            )
            async with running_daemon(config, console=StringIO()) as d:
                for _ in range(3):
                    with d.bus.subscribe() as sub:
                        t0 = time.perf_counter()
                        await d.dispatcher.manual("task", {}, "bench")
                        while not isinstance((env := await sub.queue.get()).event, Finished):
                            pass
                        daemon_times.append(time.perf_counter() - t0)
                    assert env.event.status == RunStatus.SUCCEEDED, env.event.summary
    bare, full = min(bare_times), min(daemon_times)
    return [
        Result(
            "agent loop, 50 tool calls, under nightshift",
            full * 1000,
            "ms",
            "same backend bare",
            bare * 1000,
            "≤ 1.10× bare",
            full <= 1.10 * bare,
        )
    ]


def main() -> list[Result]:
    return asyncio.run(run())
