"""The console reporter: live progress of runs in the terminal the daemon runs in."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

import structlog

from ..bus import EventBus
from ..loader import Catalog
from ..runs import (
    ApprovalDecision,
    ApprovalRequest,
    Artifact,
    Command,
    Envelope,
    FileChange,
    Finished,
    Message,
    Started,
    StatusChanged,
    SteerReceived,
    Step,
)

log = structlog.get_logger(__name__)

_MARKS = {"succeeded": "✔", "failed": "✘", "cancelled": "■", "interrupted": "⚡", "timed_out": "⌛"}


def format_event(env: Envelope, automation: str | None = None) -> str:
    """One line for one RunEvent, as shown by the console reporter and `nightshift show`."""
    ev = env.event
    head = f"{env.at.astimezone():%H:%M:%S} run {env.run_id}"
    if isinstance(ev, Started):
        return f"{head} ▶ {ev.automation} started ({ev.trigger}, attempt {ev.attempt})"
    if isinstance(ev, StatusChanged):
        return f"{head} · {ev.status.value}"
    if isinstance(ev, Step):
        return f"{head} → {ev.title}" + (f": {ev.detail}" if ev.detail else "")
    if isinstance(ev, Message):
        prefix = {"info": "", "warning": "warning: ", "error": "error: "}[ev.level]
        return f"{head}   {prefix}{ev.text}"
    if isinstance(ev, Command):
        code = "…" if ev.exit_code is None else f"exit {ev.exit_code}"
        return f"{head}   $ {ev.command} ({code})"
    if isinstance(ev, FileChange):
        return f"{head}   {ev.change} {ev.path}"
    if isinstance(ev, Artifact):
        return f"{head}   {ev.kind}: {ev.title}" + (f" {ev.url}" if ev.url else "")
    if isinstance(ev, ApprovalRequest):
        return (
            f"{head} ? approval {ev.id!r} needed for {ev.action}"
            + (f": {ev.description} " if ev.description else " ")
            + f"(nightshift approve {env.run_id} / deny {env.run_id})"
        )
    if isinstance(ev, ApprovalDecision):
        verb = "approved" if ev.approved else "denied"
        return f"{head}   {ev.id!r} {verb} by {ev.by}" + (f": {ev.reason}" if ev.reason else "")
    if isinstance(ev, SteerReceived):
        return f"{head}   steer from {ev.by}: {ev.text}"
    if isinstance(ev, Finished):
        mark = _MARKS.get(ev.status.value, "·")
        return f"{head} {mark} {ev.status.value}" + (f": {ev.summary}" if ev.summary else "")
    return f"{head}   {ev.type}"  # pragma: no cover - every type is handled above


class ConsoleReporter:
    """Prints every RunEvent of automations that report to the console."""

    def __init__(
        self, bus: EventBus, catalog: Callable[[], Catalog], out: TextIO | None = None
    ) -> None:
        self._bus = bus
        self._catalog = catalog
        self._out = out or sys.stdout
        self._automation_of: dict[int, str] = {}

    async def run(self) -> None:
        """Print until cancelled."""
        with self._bus.subscribe() as sub:
            async for env in sub:
                if isinstance(env.event, Started):
                    self._automation_of[env.run_id] = env.event.automation
                name = self._automation_of.get(env.run_id)
                automation = self._catalog().automations.get(name) if name else None
                if automation is not None and not automation.report.console:
                    continue
                try:
                    print(format_event(env), file=self._out, flush=True)
                except (BrokenPipeError, ValueError, OSError) as exc:
                    # stdout went away (a pipe's reader exited, a closed terminal): the
                    # console is a view, and the runs it shows must go on without it.
                    log.warning("console output closed; no longer printing runs", error=str(exc))
                    return
                if isinstance(env.event, Finished):
                    self._automation_of.pop(env.run_id, None)
