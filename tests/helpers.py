"""Shared bits of the test suite."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon.agents.cli import find_cli
from daemon.app import Daemon
from daemon.control import ControlClient
from daemon.errors import BackendError
from daemon.runs import RunStatus, envelope_of
from daemon.store import RunRow
from daemon.testing import wait_for


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


async def run_row(daemon: Daemon, run_id: int) -> RunRow:
    return await daemon.store.call(daemon.store.get_run, run_id)


async def wait_status(
    daemon: Daemon, run_id: int, *statuses: RunStatus, timeout: float = 15
) -> RunRow:
    async def check() -> RunRow | None:
        run = await run_row(daemon, run_id)
        return run if run.status in statuses else None

    return await wait_for(check, timeout)


async def events(daemon: Daemon, run_id: int) -> list[dict[str, Any]]:
    rows = await daemon.store.call(daemon.store.run_events, run_id)
    return [envelope_of(r).event.model_dump(mode="json") for r in rows]


async def wait_event(
    daemon: Daemon, run_id: int, type: str, timeout: float = 15, **match: Any
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        for ev in await events(daemon, run_id):
            if ev["type"] == type and all(ev.get(k) == v for k, v in match.items()):
                return ev
        return None

    return await wait_for(check, timeout)


async def client_call(daemon: Daemon, method: str, *args: Any) -> Any:
    """Call the real control API through the CLI's client (it is synchronous: use a thread)."""

    def go() -> Any:
        with ControlClient(daemon.config.socket_path) as client:
            return getattr(client, method)(*args)

    return await asyncio.to_thread(go)


GH_TOKEN = "ghp_bundled_secret_token"  # the GitHub double's own fake token
BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def make_repo(repo: Path) -> Path:
    """A git repository with a failing test: calc.add subtracts."""
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(TEST)
    (repo / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    return repo


def require_cli(name: str) -> None:
    """Fail plainly (not skip) when the pinned agent CLI is missing: CI installs it."""
    try:
        find_cli(name, None)
    except BackendError as exc:
        pytest.fail(str(exc), pytrace=False)


async def start_run(daemon: Daemon, automation: str = "fix") -> int:
    """Trigger `automation` by hand; its run id."""
    run = await daemon.dispatcher.manual(automation, {}, "test")
    assert run.id is not None
    return run.id


def publish(work: Path, remote: Path) -> Path:
    """Make `work` a repository whose one commit is pushed to a new bare `remote`."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    if not (work / ".git").exists():
        git(work, "init", "-q", "-b", "main")
        git(work, "add", ".")
        git(work, "commit", "-qm", "init")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")
    return remote


def make_remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository acting as the remote, and a clone of it with the failing calc test."""
    work = make_repo(tmp_path / "work")
    return publish(work, tmp_path / "remote.git"), work
