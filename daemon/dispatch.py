"""Event → decision → run: the one place events become runs.

Every source (schedule, manual trigger, and next webhooks, files, chat) hands its event here.
The event, what it meant for each automation, and the runs it starts are stored in one
transaction before anything executes, so a crash never loses an accepted event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from .errors import AutomationNotFound, NightshiftError, TemplateError
from .loader import Catalog
from .runs import Executor
from .spec import Automation, templates
from .store import Decision, Dispatched, NewRun, RunRow, Store, utcnow

log = structlog.get_logger(__name__)

# Beyond this many, skipped fires of one catch-up are recorded as one summary event.
MAX_SKIPPED_RECORDED = 100


def template_context(automation: Automation, event: dict[str, Any]) -> dict[str, Any]:
    """What templates in `inputs` and `when` can see."""
    return {"event": event, "automation": {"name": automation.name}, "now": utcnow()}


class Dispatcher:
    """Turns events into stored decisions and queued runs."""

    def __init__(self, store: Store, executor: Executor, catalog: Callable[[], Catalog]) -> None:
        self._store = store
        self._executor = executor
        self._catalog = catalog

    def _decide(
        self,
        automation: Automation,
        event: dict[str, Any],
        trigger: str,
        overrides: dict[str, Any] | None = None,
        apply_when: bool = True,
    ) -> Decision:
        ctx = template_context(automation, event)
        try:
            if apply_when:
                for expr in automation.when:
                    if not templates.evaluate(expr, ctx):
                        return Decision(automation.name, "filtered", f"when: {expr}")
            inputs = templates.render(dict(automation.inputs), ctx)
        except TemplateError as exc:
            return Decision(automation.name, "error", str(exc))
        inputs.update(overrides or {})
        return Decision(automation.name, "matched", "", NewRun(automation.name, trigger, inputs))

    def _submit(self, result: Dispatched | None) -> list[RunRow]:
        if result is None:
            return []
        for run in result.runs:
            self._executor.enqueue(run)
        return result.runs

    async def manual(self, name: str, inputs: dict[str, Any], by: str) -> RunRow:
        """Start an automation by hand; bad inputs are refused and nothing is stored."""
        automation = self._catalog().automations.get(name)
        if automation is None:
            raise AutomationNotFound(name)
        skill = self._catalog().skills.get(automation.skill)
        payload = {"inputs": inputs, "by": by}
        event = {"source": "manual", "type": "trigger", "payload": payload}
        decision = self._decide(automation, event, "manual", inputs, apply_when=False)
        if decision.run is None:
            raise TemplateError(decision.detail)
        if skill is not None:
            try:
                skill.resolve_inputs(decision.run.inputs)
            except ValueError as exc:
                raise NightshiftError(f"{name}: {exc}") from None
        result = await self._store.call(
            self._store.dispatch,
            source="manual",
            type="trigger",
            payload=payload,
            decisions=[decision],
        )
        runs = self._submit(result)
        log.info("manual trigger", automation=name, run_id=runs[0].id, by=by)
        return runs[0]

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
        decision = (
            self._decide(automation, event, f"schedule:{trigger_key}")
            if automation.enabled
            else Decision(automation.name, "disabled")
        )
        result = await self._store.call(
            self._store.dispatch,
            source="schedule",
            type="fire",
            key=self._slot_key(automation.name, trigger_key, slot),
            payload=payload,
            decisions=[decision],
            schedule_mark=(automation.name, trigger_key, slot),
        )
        runs = self._submit(result)
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
