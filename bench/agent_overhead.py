"""Orchestration overhead of the agent backends: ≤ 1.10× for our loop, ≤ 1.05× Codex.

The same scripted task — 50 tool calls (`run_command true`), then `finish` — is run by the
built-in backend bare (driven directly: no store, no reporters, no worktree) and under the
daemon (store, console and Slack reporters on, in its worktree). Both talk to the same scripted
Chat Completions server, which, like the Slack double, runs in a process of its own (as the real
services would: their time is network wait for nightshift, not work on its event loop). The
figure is the daemon's median wall time over the bare one's, alternating rounds (30 for our
loop, 15 for Codex). For our loop three more rows say where the difference lies: until the first
command is reported, per step between commands, and from the last command to `finished`.
For Codex, "bare" is `codex exec --json` started by hand with the same scripted Responses
server (50 `exec_command true` calls, then a message).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

from daemon.agents import BuiltinBackend, RunContext
from daemon.agents.cli import find_cli
from daemon.loader import Loader
from daemon.runs import Command, Finished, RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.models import ChatCompletionsDouble, call
from daemon.testing.responses import ResponsesDouble, message, shell, tool_outputs
from daemon.testing.slack import SlackDouble

from ._remote import remote
from ._util import Result, git_repository

CALLS = 50
ROUNDS = 30  # our loop: a round is ~0.5 s, and this machine's speed drifts within seconds
CODEX_ROUNDS = 15  # a Codex run moves by ±0.5 s between runs of 6-7 s; 7 rounds let that decide


def script(req: dict[str, Any], n: int) -> Any:
    turns = sum(1 for m in req["messages"] if m["role"] == "assistant")
    return call("run_command", command="true") if turns < CALLS else call("finish", summary="done")


def task_project(root: Path, agent: dict[str, Any]) -> Project:
    """One automation, `task`, reporting to #ops, working in a fresh repository."""
    project = Project(root / "p")
    project.skill("task", None, body="Run the command 50 times.")
    project.automation(
        "task",
        skill="task",
        workspace={"repository": str(git_repository(root / "repo", {"README": "x\n"}))},
        report={"channel": "#ops"},
        agent=agent,
    )
    return project


def daemon_config(project: Project, slack: dict[str, str]) -> Any:
    """Store, console and Slack reporters on (Slack paced at 50 ms, not Slack's 1 s)."""
    return project.config(
        console=True,
        logging={"level": "warning"},
        slack={
            "bot_token": slack["bot_token"],
            "base_url": slack["base_url"],
            "min_interval": "50ms",
        },
    )


async def settled(d: Any) -> None:
    """Until the daemon has done everything the last run left: its worktree removed, the
    next run's spare worktree made, its Slack messages delivered. A bare round must not share
    the machine with the previous daemon round's work."""
    await d.executor.settle()
    await wait_for(lambda: all(item.status != "pending" for item in d.store.outbox()), timeout=60)


class Phases:
    """When a round's commands were reported, from its start: where a gap to bare lies."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.commands: list[float] = []
        self.end = 0.0

    def saw(self, event: Any) -> None:
        now = time.perf_counter() - self.t0
        if isinstance(event, Command):
            self.commands.append(now)
        elif isinstance(event, Finished):
            self.end = now

    @property
    def first(self) -> float:
        return self.commands[0]

    @property
    def step(self) -> float:
        return (self.commands[-1] - self.commands[0]) / (len(self.commands) - 1)

    @property
    def tail(self) -> float:
        return self.end - self.commands[-1]


async def timed_run(d: Any) -> Phases:
    """Trigger `task` in the daemon; its phases until its `finished` event."""
    with d.bus.subscribe() as sub:
        phases = Phases()
        await d.dispatcher.manual("task", {}, "bench")
        while True:
            env = await sub.queue.get()
            phases.saw(env.event)
            if isinstance(env.event, Finished):
                break
    assert env.event.status == RunStatus.SUCCEEDED, env.event.summary
    return phases


async def run() -> list[Result]:
    bare_rounds: list[Phases] = []
    daemon_rounds: list[Phases] = []
    with (
        remote(lambda: ChatCompletionsDouble(script)) as model,
        remote(SlackDouble) as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        root = Path(tmp)
        agent = {
            "backend": "builtin",
            "base_url": model["base_url"],
            "model": "m",
            "max_steps": 100,
        }
        project = task_project(root, agent)
        catalog = Loader(project.automations, project.skills).load()
        automation, skill = catalog.automations["task"], catalog.skills["task"]
        async with running_daemon(daemon_config(project, slack), console=StringIO()) as d:
            # Alternate the two so that drift in the machine's speed hits both alike.
            for i in range(ROUNDS):
                work = root / f"bare{i}"
                work.mkdir()
                ctx = RunContext(
                    run_id=1000 + i,
                    attempt=1,
                    automation=automation,
                    skill=skill,
                    inputs={},
                    event={},
                    workdir=work,
                )
                await settled(d)
                phases = Phases()
                bare_run = await BuiltinBackend().start(ctx)
                async for event in bare_run.events():
                    phases.saw(event)
                    if isinstance(event, Finished):
                        assert event.status == RunStatus.SUCCEEDED, event.summary
                bare_rounds.append(phases)
                daemon_rounds.append(await timed_run(d))

    def ms(rounds: list[Phases], phase: str, scale: float = 1000) -> float:
        return statistics.median(float(getattr(r, phase)) for r in rounds) * scale

    bare, full = ms(bare_rounds, "end"), ms(daemon_rounds, "end")
    # Where the gap lies (medians; no target): before the first command is reported, per
    # step between commands, and from the last command to `finished`.
    parts = [
        Result(
            f"agent loop, {what}, under nightshift",
            ms(daemon_rounds, phase, scale),
            unit,
            "bare",
            ms(bare_rounds, phase, scale),
            "—",
            True,
        )
        for what, phase, unit, scale in (
            ("first command reported", "first", "ms", 1e3),
            ("per step (command to command)", "step", "µs", 1e6),
            ("last command to finished", "tail", "ms", 1e3),
        )
    ]
    whole = Result(
        "agent loop, 50 tool calls, under nightshift",
        full,
        "ms",
        "same backend bare",
        bare,
        "≤ 1.10× bare",
        full <= 1.10 * bare,
    )
    return [whole, *parts]


def codex_script(req: dict[str, Any], n: int) -> Any:
    return [shell("true")] if len(tool_outputs(req)) < CALLS else [message("done")]


async def codex_bare(base_url: str, work: Path, home: Path) -> float:
    """`codex exec --json` run by hand: the provider in config.toml, nothing else."""
    (home / "config.toml").write_text(
        'model = "gpt-5.5"\nmodel_provider = "m"\napproval_policy = "never"\n'
        'sandbox_mode = "workspace-write"\n[model_providers.m]\nname = "m"\n'
        f'base_url = "{base_url}"\nwire_api = "responses"\n'
    )
    argv = [find_cli("codex", None), "exec", "--json", "--skip-git-repo-check"]
    for feature in ("plugins", "remote_plugin", "apps", "shell_snapshot"):
        argv += ["--disable", feature]
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(home)}
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, "run the command 50 times", cwd=work, env={**env, "TMPDIR": str(work)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, out[-500:]
    assert b'"text":"done"' in out, out[-500:]
    return elapsed


async def run_codex() -> Result:
    bare_times, daemon_times = [], []
    with (
        remote(lambda: ResponsesDouble(codex_script)) as model,
        remote(SlackDouble) as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        root = Path(tmp)
        project = task_project(root, {"backend": "codex", "base_url": model["base_url"]})
        async with running_daemon(daemon_config(project, slack), console=StringIO()) as d:
            for i in range(CODEX_ROUNDS):
                # By hand, one runs codex in a checkout of the repository too.
                work, home = root / f"bare{i}", root / f"home{i}"
                clone = ["git", "clone", "-q", str(root / "repo"), str(work)]
                await asyncio.to_thread(subprocess.run, clone, check=True)
                home.mkdir()
                await settled(d)
                bare_times.append(await codex_bare(model["base_url"], work, home))
                daemon_times.append((await timed_run(d)).end)
    bare, full = statistics.median(bare_times), statistics.median(daemon_times)
    return Result(
        "Codex CLI, 50 tool calls, under nightshift",
        full * 1000,
        "ms",
        "codex exec by hand",
        bare * 1000,
        "≤ 1.05× bare",
        full <= 1.05 * bare,
    )


def main() -> list[Result]:
    return [*asyncio.run(run()), asyncio.run(run_codex())]
