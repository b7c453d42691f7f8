"""Helpers to test automations and skills offline, exactly as nightshift tests itself.

- `Project`: a throwaway folder with `automations/`, `skills/` and a config.
- `running_daemon`: a real daemon (store, executor, control API on its Unix socket) in-process.
- `wait_for`: wait on a condition instead of sleeping.
- `capture_events`: the run events a daemon publishes inside a block.

The wire-level doubles of the services nightshift talks to are in `testing.github`,
`testing.slack`, `testing.models`, `testing.prometheus` and `testing.packages`; the HTTP ones
also run in-process through an httpx `transport=` (`ScriptedServer.transport()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..app import Daemon
from ..config import DaemonConfig
from .capture import CapturedEvents, capture_events

__all__ = [
    "CapturedEvents",
    "Project",
    "capture_events",
    "running_daemon",
    "wait_for",
    "wait_for_sync",
]

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0, interval: float = 0.01
) -> T:
    """Poll `predicate` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02
) -> T:
    """`wait_for` for synchronous code (subprocess tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Project:
    """A folder laid out like a nightshift checkout."""

    root: Path

    def __post_init__(self) -> None:
        (self.root / "automations").mkdir(parents=True, exist_ok=True)
        (self.root / "skills").mkdir(parents=True, exist_ok=True)

    @property
    def automations(self) -> Path:
        return self.root / "automations"

    @property
    def skills(self) -> Path:
        return self.root / "skills"

    def config(self, **overrides: Any) -> DaemonConfig:
        """A config rooted in this project (state in `.nightshift/`, no hot-reload polling)."""
        data: dict[str, Any] = {"console": False, "shutdown_grace": 5, "http": {"port": 0}}
        data.update(overrides)
        return DaemonConfig.model_validate({**data, "base_dir": self.root})

    def write_config(self, **overrides: Any) -> Path:
        """Write `config.yaml` and return its path (for subprocess daemons)."""
        data: dict[str, Any] = {"console": True, "shutdown_grace": 5, "http": {"port": 0}}
        data.update(overrides)
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def skill(
        self,
        name: str,
        script: str | None = None,
        *,
        inputs: dict[str, Any] | None = None,
        description: str = "A test skill.",
        body: str = "Do the thing.",
        permissions: dict[str, Any] | None = None,
    ) -> Path:
        """Write a skill; `script` (Python source) becomes its `scripts/run.py` entry point."""
        folder = self.skills / name
        (folder / "scripts").mkdir(parents=True, exist_ok=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: {description}\n---\n{body}\n"
        )
        manifest: dict[str, Any] = {"inputs": inputs or {}}
        if permissions is not None:
            manifest["permissions"] = permissions
        if script is not None:
            (folder / "scripts" / "run.py").write_text(textwrap.dedent(script))
            manifest["entrypoint"] = "scripts/run.py"
        (folder / "nightshift.yaml").write_text(yaml.safe_dump(manifest))
        return folder

    def automation(self, name: str, text: str | None = None, **fields: Any) -> Path:
        """Write `automations/<name>.yaml` from raw YAML text or from fields."""
        path = self.automations / f"{name}.yaml"
        if text is None:
            text = yaml.safe_dump({"name": name, **fields}, sort_keys=False)
        path.write_text(textwrap.dedent(text))
        return path


@contextlib.asynccontextmanager
async def running_daemon(config: DaemonConfig, **kwargs: Any) -> AsyncIterator[Daemon]:
    """Start a daemon in this event loop, wait until it serves, stop it on exit."""
    daemon = Daemon(config, console=kwargs.pop("console", StringIO()), **kwargs)
    task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        await task  # raises what stopped it
    if ready not in done:
        raise TimeoutError("daemon did not become ready")
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)
