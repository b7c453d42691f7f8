"""Starting a run's agent: its inputs and environment resolved, its folder (a worktree, made
while the backend starts, or a plain folder), its `RunContext`, and the backend's start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import workspace
from ..agents import AgentBackend, RunContext
from ..config import StateLayout
from ..errors import NightshiftError
from ..loader import Catalog
from ..runs import RunStatus
from ..spec import Automation, Skill
from ..store import EventRow, RunRow
from .lifecycle import RunLifecycle


async def _ready_now() -> None:
    return None


def local_repository(automation: Automation, base_dir: Path) -> Path | None:
    """The automation's repository as a local folder; None for a clone URL."""
    repo = automation.workspace.repository
    if workspace.is_url(repo):
        return None  # a clone URL: workspaces (worktrees of a mirror) handle those
    path = Path(repo).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def event_for_agent(found: EventRow | None) -> dict[str, Any]:
    """The event that started a run, as its agent is handed it."""
    if found is None:
        return {}
    return {
        "id": found.id,
        "source": found.source,
        "type": found.type,
        "received_at": found.received_at.isoformat(),
        "payload": found.payload,
    }


class Launcher:
    """Starts agents for the executor."""

    def __init__(self, state: StateLayout, skill_env: Callable[[Skill], dict[str, str]]) -> None:
        self._state = state
        self._skill_env = skill_env  # what the daemon's config grants a skill (e.g. GitHub)

    async def launch(
        self,
        active: RunLifecycle,
        automation: Automation,
        skill: Skill | None,
        backend: AgentBackend | None,
        repo: Path | None,
        run: RunRow,
        found: EventRow | None,
        catalog: Catalog,
    ) -> tuple[RunStatus, str] | None:
        """Start the run's agent (`active.agent`); if it cannot start, the run's end and why."""
        run_id = active.run_id
        if skill is None or backend is None:
            missing = (
                f"skill {automation.skill!r}"
                if skill is None
                else f"backend {automation.agent.backend!r}"
            )
            return RunStatus.FAILED, f"{missing} is not available"
        if run.untrusted:
            # Asked for from a fork: its code and text are a stranger's. The run gets no
            # secret (no GitHub token, none of the automation's env), no network, no GitHub.
            permissions = skill.manifest.permissions.model_copy(
                update={"network": False, "github": False}
            )
            manifest = skill.manifest.model_copy(update={"permissions": permissions})
            skill = replace(skill, manifest=manifest)
        try:
            inputs = skill.resolve_inputs(run.inputs)
            env = {} if run.untrusted else self._skill_env(skill)
            if not run.untrusted:
                env.update({k: v.resolve() for k, v in automation.env.items()})
        except (ValueError, NightshiftError) as exc:
            return RunStatus.FAILED, f"cannot start: {exc}"
        event = event_for_agent(found)
        ready = _ready_now
        if automation.isolated():
            if active.tree is None:  # a clone URL: a worktree of the cached mirror, once fetched
                try:
                    repo = await workspace.mirror(
                        automation.workspace.repository, self._state.mirrors
                    )
                except NightshiftError as exc:
                    return RunStatus.FAILED, f"cannot make the workspace: {exc}"
                base = f"origin/{automation.workspace.base_branch or 'HEAD'}"
                active.start_tree(repo, automation.name, base, self._state)
            # The worktree is made while the backend starts (and a model thinks about its
            # first step); every backend awaits `ctx.ready()` before it touches the folder.
            assert active.tree is not None
            workdir, ready = active.tree.path, active.tree.ready
        else:
            workdir = self._state.runs / str(run_id)
            await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        ctx = RunContext(
            run_id=run_id,
            attempt=run.attempt,
            automation=automation,
            skill=skill,
            inputs=inputs,
            event=event,
            workdir=workdir,
            env=env,
            repository=repo,
            skills=tuple(catalog.skills.values()),
            ready=ready,
            journal=self._state.journal(run_id),
            untrusted=run.untrusted,
        )
        try:
            active.agent = await backend.start(ctx)
        except NightshiftError as exc:
            return RunStatus.FAILED, str(exc)
        return None
