"""Event → decision → run: the one place events become runs.

Every source (schedule, manual trigger, and next webhooks, files, chat) hands its event here.
The event, what it meant for each automation, and the runs it starts are stored in one
transaction before anything executes, so a crash never loses an accepted event.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from . import logs
from .bus import EventBus
from .config import SourcesConfig
from .conversations import Mentioned
from .decisions import classify, decide
from .errors import AutomationNotFound, NightshiftError, RunStateError, TemplateError
from .executor import Executor
from .loader import Catalog
from .runs import Message, RunStatus
from .sources import Incoming, alertmanager
from .spec import (
    Automation,
    Skill,
)
from .store import (
    Decision,
    Dispatched,
    DispatchRequest,
    RunRow,
    Store,
)

log = structlog.get_logger(__name__)

# Beyond this many, skipped fires of one catch-up are recorded as one summary event.
MAX_SKIPPED_RECORDED = 100


_PLACEHOLDER = re.compile(r"\byour-(?:org|repo|service)\b")


def _placeholder(automation: Automation, inputs: dict[str, Any]) -> str | None:
    """Where `automation` still has a bundled example's placeholder (`your-org/your-repo`)."""
    places: dict[str, Any] = {"workspace.repository": automation.workspace.repository}
    places.update({f"inputs.{k}": v for k, v in {**automation.inputs, **inputs}.items()})
    for where, value in places.items():
        if isinstance(value, str) and _PLACEHOLDER.search(value):
            return f"{value!r} ({where})"
    return None


@dataclass
class Routed:
    """What `Dispatcher.route` did with an event."""

    event_id: int | None
    runs: list[RunRow]
    duplicate: bool = False


class Dispatcher:
    """Turns events into stored decisions and queued runs."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        catalog: Callable[[], Catalog],
        *,
        bus: EventBus | None = None,
        sources: SourcesConfig | None = None,
        unready: Callable[[Automation, Skill], str | None] | None = None,
        mentions: Callable[[Mentioned], None] | None = None,
    ) -> None:
        """`unready` tells why a run of an automation could not start now (a missing token):
        a person's trigger of it is then refused at once rather than failing in the run."""
        self._unready = unready or (lambda automation, skill: None)
        self._mentions = mentions  # where mentions go once stored (the conversations)
        self._store = store
        self._executor = executor
        self._catalog = catalog
        self._bus = bus or EventBus(store)
        self._sources = sources or SourcesConfig()
        self._paused: dict[str, tuple[str, datetime]] = {}  # name -> (by, at), as stored

    async def load_paused(self) -> None:
        """Read which automations a person paused (before the schedules catch up)."""
        self._paused = await self._store.call(self._store.paused_automations)

    def paused(self) -> Mapping[str, tuple[str, datetime]]:
        """Each paused automation: who paused it, and when."""
        return dict(self._paused)

    async def set_paused(self, name: str, paused: bool, by: str) -> None:
        """Pause or resume an automation: while paused its due fires are recorded as skipped,
        its events start nothing, and a person's trigger is refused unless forced. Kept in
        the store, so it survives a restart."""
        if name not in self._catalog().automations:
            raise AutomationNotFound(name)
        row = await self._store.call(self._store.set_paused, name, paused, by)
        if paused:
            self._paused[name] = (row.by, row.at)
        else:
            self._paused.pop(name, None)
        log.info("automation paused" if paused else "automation resumed", automation=name, by=by)

    def _unless_paused(self, decision: Decision, verdict: str) -> Decision:
        """`decision`, or `verdict` with who paused it where it would start a run of a paused
        automation."""
        held = self._held(decision.automation)
        if decision.run is None or held is None:
            return decision
        return Decision(decision.automation, verdict, held)

    def _held(self, name: str) -> str | None:
        """Who paused `name` and when, as a decision's detail; None when it is not paused."""
        if (held := self._paused.get(name)) is None:
            return None
        by, at = held
        return f"paused by {by} at {at:%Y-%m-%d %H:%M} UTC"

    async def _submit(self, result: Dispatched | None) -> list[RunRow]:
        if result is None:
            return []
        for run in result.runs:
            self._executor.enqueue(run)
        for old, new in result.superseded.items():
            with contextlib.suppress(RunStateError):
                await self._executor.cancel(old, "nightshift", f"superseded by run {new}")
        return result.runs

    async def manual(
        self,
        name: str,
        inputs: dict[str, Any],
        by: str,
        origin: dict[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> RunRow:
        """Start an automation by hand; bad inputs are refused and nothing is stored.

        `origin` says where a chat command came from (`{"slack": {"channel", "thread_ts"}}`),
        so the run reports back there. A disabled automation, one still naming the bundled
        examples' placeholder repository, or one missing a token it needs, is refused unless
        `force`d: it would only fail.
        """
        automation = self._catalog().automations.get(name)
        if automation is None:
            raise AutomationNotFound(name)
        if not force:
            if not automation.enabled:
                raise NightshiftError(
                    f"automation {name!r} is disabled (enabled: false); "
                    "trigger it anyway with --force"
                )
            if (held := self._paused.get(name)) is not None:
                raise NightshiftError(
                    f"automation {name!r} is paused (by {held[0]}); resume it, "
                    "or trigger it anyway with --force"
                )
            placeholder = _placeholder(automation, inputs)
            if placeholder is not None:
                raise NightshiftError(
                    f"automation {name!r} still names the placeholder {placeholder}: "
                    "set your own repository in its file (or pass it with -i), "
                    "or trigger it anyway with --force"
                )
        skill = self._catalog().skills.get(automation.skill)
        if not force and skill is not None and (why := self._unready(automation, skill)):
            raise NightshiftError(
                f"automation {name!r} cannot start: {why}; trigger it anyway with --force"
            )
        payload = {"inputs": inputs, "by": by, **(origin or {})}
        event = {"source": "manual", "type": "trigger", "payload": payload}
        decision = decide(automation, event, "manual", inputs, apply_when=False)
        if decision.run is None:
            raise TemplateError(decision.detail)
        if skill is not None:
            try:
                skill.resolve_inputs(decision.run.inputs)
            except ValueError as exc:
                raise NightshiftError(f"{name}: {exc}") from None
        result = await self._store.submit(
            DispatchRequest(source="manual", type="trigger", payload=payload, decisions=[decision])
        )
        runs = await self._submit(result)
        if not runs:  # the cost cap binds a person too: what held it, as the decision says
            found = None
            if result is not None:
                found = await self._store.call(self._store.get_event, result.event_id)
            why = found[1][0].detail if found is not None and found[1] else "no run started"
            raise NightshiftError(f"{name}: {why}")
        log.info("manual trigger", automation=name, run_id=runs[0].id, by=by)
        return runs[0]

    async def retry(self, run_id: int, by: str, origin: dict[str, Any] | None = None) -> RunRow:
        """Run a finished run's automation again with the same inputs: a new run, reporting
        in the thread of `origin`, or else in the finished run's own thread."""
        run = await self._store.call(self._store.get_run, run_id)
        if not RunStatus(run.status).finished:
            raise RunStateError(f"run {run_id} is still {run.status}")
        if origin is None:
            parent = await self._store.call(self._store.parent_outbox, run_id)
            thread = parent and (parent.thread_ts or parent.ts)
            if parent is not None and thread:
                origin = {
                    "slack": {"channel": parent.channel_id or parent.channel, "thread_ts": thread}
                }
        new = await self.manual(run.automation, dict(run.inputs), by, origin)
        await self._bus.emit(run_id, Message(text=f"retried by {by} as run {new.id}"))
        return new

    async def route(self, incoming: Incoming) -> Routed:
        """Store an event from outside with one decision per automation that listens to its
        kind, and queue the runs it starts. A key stored before starts nothing (duplicate)."""
        decisions: list[Decision] = []
        conversations: list[Mentioned] = []
        for automation in self._catalog().automations.values():
            decision, heard = classify(automation, incoming, self._sources)
            if decision is None:
                continue
            if heard is None:
                decisions.append(self._unless_paused(decision, "paused"))
            elif (held := self._held(automation.name)) is not None:
                decisions.append(Decision(automation.name, "paused", held))
            else:
                decisions.append(decision)
                conversations.append(heard)
        resolved: list[RunRow] = []
        if incoming.source == "alertmanager" and incoming.payload.get("status") == "resolved":
            resolved = await self._store.call(
                self._store.runs_for_event_key, alertmanager.firing_key(incoming)
            )
            decisions += [
                Decision(r.automation, "resolved", f"resolves run {r.id}", run_id=r.id)
                for r in resolved
            ]
        result = await self._store.submit(
            DispatchRequest(
                source=incoming.source,
                type=incoming.type,
                key=incoming.key,
                identity=incoming.identity,
                payload=incoming.payload,
                payload_json=incoming.text,
                decisions=decisions,
            )
        )
        if result is None:
            return Routed(None, [], duplicate=True)
        for run in resolved:
            assert run.id is not None
            name = incoming.meta.get("alert", {}).get("name") or "the alert"
            ends = incoming.payload["alert"].get("endsAt", "")
            await self._bus.emit(run.id, Message(text=f"resolved: {name} ended at {ends}"))
        runs = await self._submit(result)
        for heard in conversations:  # handled in their conversation's order, once stored
            if self._mentions is not None:
                self._mentions(replace(heard, event_id=result.event_id))
        if logs.enabled("info"):
            log.info(
                "event routed",
                source=incoming.source,
                type=incoming.type,
                event_id=result.event_id,
                runs=[r.id for r in runs],
                decisions={d.automation: d.decision for d in decisions},
            )
        return Routed(result.event_id, runs)

    @staticmethod
    def _slot_key(name: str, trigger_key: str, slot: datetime) -> str:
        return f"schedule:{name}:{trigger_key}:{slot.isoformat()}"

    async def fire(
        self, automation: Automation, trigger_key: str, slot: datetime, late: bool
    ) -> RunRow | None:
        """Fire one schedule slot; None when another replica (or a retry) fired it already."""
        payload = {
            "automation": automation.name,
            "trigger": trigger_key,
            "scheduled_for": slot.isoformat(),
            "late": late,
        }
        event = {"source": "schedule", "type": "fire", "payload": payload}
        decision = self._unless_paused(
            decide(automation, event, f"schedule:{trigger_key}")
            if automation.enabled
            else Decision(automation.name, "disabled"),
            "skipped",
        )
        result = await self._store.submit(
            DispatchRequest(
                source="schedule",
                type="fire",
                key=self._slot_key(automation.name, trigger_key, slot),
                payload=payload,
                decisions=[decision],
                schedule_mark=(automation.name, trigger_key, slot),
            )
        )
        runs = await self._submit(result)
        if decision.decision != "matched":
            log.info(
                "schedule fire not run",
                automation=automation.name,
                decision=decision.decision,
                detail=decision.detail,
            )
        return runs[0] if runs else None

    async def skip(
        self, name: str, trigger_key: str, slots: Sequence[datetime], reason: str
    ) -> None:
        """Record missed fires that will not run, so they are visible, never silent."""
        if not slots:
            return
        log.warning(
            "schedule fires skipped",
            automation=name,
            trigger=trigger_key,
            count=len(slots),
            first=slots[0].isoformat(),
            last=slots[-1].isoformat(),
            reason=reason,
        )
        shown = slots[-MAX_SKIPPED_RECORDED:]
        rest = slots[:-MAX_SKIPPED_RECORDED] if len(slots) > MAX_SKIPPED_RECORDED else []
        if rest:
            payload = {
                "automation": name,
                "trigger": trigger_key,
                "count": len(rest),
                "first": rest[0].isoformat(),
                "last": rest[-1].isoformat(),
            }
            detail = f"{reason}; {len(rest)} fires from {rest[0]} to {rest[-1]}"
            await self._store.call(
                self._store.dispatch,
                source="schedule",
                type="skipped_fires",
                key=f"schedule:{name}:{trigger_key}:skipped:{rest[0].isoformat()}:{rest[-1].isoformat()}",
                payload=payload,
                decisions=[Decision(name, "skipped", detail)],
            )
        for slot in shown:
            payload = {
                "automation": name,
                "trigger": trigger_key,
                "scheduled_for": slot.isoformat(),
            }
            await self._store.call(
                self._store.dispatch,
                source="schedule",
                type="fire",
                key=self._slot_key(name, trigger_key, slot),
                payload=payload,
                decisions=[Decision(name, "skipped", reason)],
            )
        await self._store.call(self._store.mark_schedule, name, trigger_key, slots[-1])
