"""Time-based triggers: cron, interval and date.

APScheduler's triggers compute fire times; this module decides what fires. The last slot of
each schedule is persisted, and each slot is claimed through the store's unique event key, so
a slot fires once — across restarts and across replicas sharing one database. After downtime
the automation's misfire policy decides, and every fire that will not run is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from ..durations import format_duration
from ..loader import Catalog
from ..spec import Automation, ScheduleTrigger
from ..store import Store, utcnow
from .incoming import Dispatching

log = structlog.get_logger(__name__)

_TICK = timedelta(microseconds=1)
# A catch-up never enumerates more slots than this (an every-second schedule down for a week).
MAX_CATCH_UP = 10_000


def _repeated_wall_time(trigger: BaseTrigger, at: datetime) -> bool:
    """True for the second pass of a fixed-hour cron time in a DST fall-back hour."""
    if not isinstance(trigger, CronTrigger):
        return False
    hour = str(trigger.fields[5])
    if "*" in hour or "/" in hour:
        return False  # wildcard hours follow real elapsed time, both passes included
    local = at.astimezone(trigger.timezone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def next_after(trigger: BaseTrigger, t: datetime) -> datetime | None:
    """The first fire time strictly after `t`, in UTC (stateless for cron, interval and date).

    Times go in and come out as UTC: APScheduler 3.x can get stuck after a DST change when fed
    its own zone-aware results. Like cron, a fixed-time job fires once in a repeated hour.
    """
    cur = t
    while True:
        nxt: datetime | None = trigger.get_next_fire_time(None, (cur + _TICK).astimezone(UTC))
        if nxt is None:
            return None
        nxt = nxt.astimezone(UTC)
        if nxt <= t:
            return None  # a date trigger in the past
        if not _repeated_wall_time(trigger, nxt):
            return nxt
        cur = nxt


@dataclass
class _Entry:
    automation: Automation
    key: str
    spec: ScheduleTrigger
    trigger: BaseTrigger
    last: datetime
    next_fire: datetime | None


class Scheduler:
    """Keeps one entry per (automation, trigger) and fires them on time."""

    def __init__(
        self, store: Store, dispatcher: Dispatching, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def schedules(self) -> list[tuple[str, str, str]]:
        """(automation, trigger key, trigger type) of every active schedule."""
        return sorted((name, key, e.spec.type) for (name, key), e in self._entries.items())

    def next_fires(self) -> dict[str, datetime | None]:
        """Next fire time per automation (the earliest of its triggers)."""
        out: dict[str, datetime | None] = {}
        for (name, _), entry in self._entries.items():
            cur = out.get(name)
            if entry.next_fire is not None and (cur is None or entry.next_fire < cur):
                out[name] = entry.next_fire
            else:
                out.setdefault(name, cur)
        return out

    async def sync(self, catalog: Catalog, *, catch_up: bool = False) -> None:
        """Make the entries match the catalog.

        With `catch_up` (at start-up) schedules resume from their stored last fire, so fires
        missed while the daemon was down go to the misfire policy. A schedule added or edited
        while the daemon runs counts from now: an edit never fires a backlog.
        """
        async with self._lock:
            wanted: dict[tuple[str, str], tuple[Automation, ScheduleTrigger]] = {}
            for automation in catalog.automations.values():
                if not automation.enabled:
                    continue
                for key, spec in automation.schedule_triggers():
                    wanted[(automation.name, key)] = (automation, spec)
            now = self._clock()
            entries: dict[tuple[str, str], _Entry] = {}
            fresh: list[_Entry] = []
            for ident, (automation, spec) in wanted.items():
                entry = self._entries.get(ident)
                if entry is not None and entry.spec == spec:
                    entry.automation = automation  # policies or inputs may have changed
                    entries[ident] = entry
                    continue
                try:
                    trigger = spec.build()
                    next_after(trigger, now)
                except Exception as exc:
                    # The file validated but its schedule cannot be computed: that
                    # schedule waits for a fixed file; every other one keeps running.
                    log.error(
                        "schedule cannot be computed",
                        automation=ident[0],
                        trigger=ident[1],
                        exc_info=exc,
                    )
                    continue
                last = await self._store.call(self._store.last_fire, *ident) if catch_up else None
                if last is None:
                    # From now on: remember it, so downtime from here is noticed.
                    await self._store.call(self._store.mark_schedule, *ident, now)
                    last = now
                entry = _Entry(automation, ident[1], spec, trigger, last, next_after(trigger, last))
                entries[ident] = entry
                fresh.append(entry)
            self._entries = entries  # one swap: readers never see a half-applied reload
            for entry in fresh:
                await self._process(entry, now)
        self._wake.set()

    async def run(self) -> None:
        """Fire due slots until cancelled."""
        while True:
            now = self._clock()
            async with self._lock:
                for entry in list(self._entries.values()):
                    if entry.next_fire is not None and entry.next_fire <= now:
                        await self._process(entry, now)
            upcoming = [e.next_fire for e in self._entries.values() if e.next_fire is not None]
            delay = None
            if upcoming:
                delay = max((min(upcoming) - self._clock()).total_seconds(), 0.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _process(self, entry: _Entry, now: datetime) -> None:
        """Fire (or record as skipped) every slot of `entry` in (last, now]."""
        due: list[datetime] = []
        slot = next_after(entry.trigger, entry.last)
        while slot is not None and slot <= now:
            due.append(slot)
            if len(due) >= MAX_CATCH_UP:
                # Jump ahead: the rest are beyond any sane grace window anyway.
                nxt = next_after(entry.trigger, now - entry.automation.policies.misfire.grace)
                slot = nxt if nxt is not None and nxt > slot else next_after(entry.trigger, slot)
                continue
            slot = next_after(entry.trigger, slot)
        entry.next_fire = slot
        if not due:
            return
        name = entry.automation.name
        policy = entry.automation.policies.misfire
        # A slot counts as on time when it is the only one due and fired within the grace window;
        # everything else is a misfire, handled by the automation's policy.
        in_grace = [s for s in due if now - s <= policy.grace]
        too_old = [s for s in due if now - s > policy.grace]
        await self._dispatcher.skip(
            name, entry.key, too_old, f"missed by more than {format_duration(policy.grace)}"
        )
        if len(in_grace) == 1 and len(due) == 1 and now - in_grace[0] < timedelta(seconds=60):
            to_run, skipped = in_grace, []
        elif policy.policy == "skip":
            to_run, skipped = [], in_grace
        elif policy.policy == "run_once":
            to_run, skipped = in_grace[-1:], in_grace[:-1]
        else:
            to_run, skipped = in_grace, []
        await self._dispatcher.skip(name, entry.key, skipped, f"misfire policy {policy.policy}")
        for s in to_run:
            late = now - s >= timedelta(seconds=60)
            run = await self._dispatcher.fire(entry.automation, entry.key, s, late)
            log.info(
                "schedule fired",
                automation=name,
                trigger=entry.key,
                slot=s.isoformat(),
                run_id=run.id if run else None,
                late=late,
            )
        entry.last = due[-1]
