"""The one interface every agent backend implements.

A backend `start`s a run and hands back an `AgentRun`: a stream of RunEvents plus `steer`,
`decide` and `cancel`. The executor, reporters and CLI never know which backend ran.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..runs import ApprovalRequest, Finished, RunEvent
from ..spec import Automation, Skill


async def _no_wait() -> None:
    return None


@dataclass(frozen=True)
class RunContext:
    """Everything a backend needs to carry out one run."""

    run_id: int
    attempt: int
    automation: Automation
    skill: Skill
    inputs: Mapping[str, Any]
    event: Mapping[str, Any]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    repository: Path | None = None
    skills: tuple[Skill, ...] = ()  # the catalog, for agents that read other skills on demand
    # The worktree may still be in the making when the backend starts (it is made while the
    # model thinks about its first step): await this before touching `workdir`.
    ready: Callable[[], Awaitable[None]] = _no_wait
    # Where a script backend keeps the script's journal (`script_journal`), if anywhere.
    journal: Path | None = None
    # Asked for from a fork's pull request: no secrets, and no command ever gets the network.
    untrusted: bool = False

    def to_json(self) -> dict[str, Any]:
        """What a script backend writes to the script's stdin (no secrets: env stays out)."""
        return {
            "type": "context",
            "run": {"id": self.run_id, "attempt": self.attempt},
            "automation": {
                "name": self.automation.name,
                "workspace": {
                    **self.automation.workspace.model_dump(mode="json"),
                    "path": str(self.repository) if self.repository else None,
                },
            },
            "skill": {"name": self.skill.name, "path": str(self.skill.path)},
            "inputs": dict(self.inputs),
            "event": dict(self.event),
            "workdir": str(self.workdir),
        }


class AgentRun(Protocol):
    """A run in progress inside a backend."""

    def events(self) -> AsyncIterator[RunEvent]:
        """The run's events; the last one is `Finished`."""
        ...

    async def steer(self, text: str, by: str) -> None:
        """Deliver steering text into the agent's context."""

    async def decide(self, approval_id: str, approved: bool, reason: str | None) -> None:
        """Deliver the decision on an approval request."""

    async def cancel(self) -> None:
        """Stop the agent and everything it started (idempotent)."""

    async def pause(self) -> None:
        """Suspend the agent until `resume` (raise BackendError if it cannot)."""

    async def resume(self) -> None:
        """Continue after `pause`."""


class QueuedRun:
    """What the agent backends that run their own task share: a queue of RunEvents read by
    `events()` (it ends with `Finished`), and approvals that wait for `decide()`."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._decisions: dict[str, asyncio.Future[tuple[bool, str | None]]] = {}
        self._approvals = 0

    def emit(self, event: RunEvent) -> None:
        self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[RunEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Finished):
                return

    async def decide(self, approval_id: str, approved: bool, reason: str | None) -> None:
        waiter = self._decisions.get(approval_id)
        if waiter is not None and not waiter.done():
            waiter.set_result((approved, reason))

    async def approval(self, action: str, description: str) -> tuple[bool, str | None]:
        """Ask the thread; wait for the decision (approved, reason)."""
        self._approvals += 1
        approval_id = f"a{self._approvals}"
        waiter: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        self._decisions[approval_id] = waiter
        self.emit(ApprovalRequest(id=approval_id, action=action, description=description))
        return await waiter


class AgentBackend(Protocol):
    """Starts runs."""

    name: str

    async def start(self, ctx: RunContext) -> AgentRun:
        """Begin carrying out `ctx`; raise `BackendError` if that is impossible."""
        ...


def skill_catalog(ctx: RunContext) -> str:
    """The Agent Skills catalog of the other skills: name, description, where to read more."""
    return "\n".join(
        f"<skill><name>{s.name}</name><description>{s.description}</description>"
        f"<location>{s.path / 'SKILL.md'}</location></skill>"
        for s in ctx.skills
        if s.name != ctx.skill.name
    )


def run_facts(ctx: RunContext) -> str:
    """The run's inputs and triggering event, as the agent reads them (the event clipped), and
    the actions the skill's manifest marks as needing approval."""
    facts = (
        f"Inputs: {json.dumps(dict(ctx.inputs))}\n"
        f"Event: {json.dumps(dict(ctx.event), default=str)[:4000]}"
    )
    needs = ctx.skill.manifest.permissions.approval_required
    if needs:
        facts += (
            "\nThis skill needs an approval before each of these actions: "
            f"{', '.join(needs)}. Ask with `request_approval` (action and what exactly), wait "
            "for the answer, and leave the action out if it is denied."
        )
    return facts
