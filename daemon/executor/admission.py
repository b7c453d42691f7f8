"""The runs waiting for a slot, and the rule that admits them: at most `max_runs` at once,
at most an automation's `max_instances` of one automation, and a retry not before its time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..loader import Catalog


@dataclass(order=True)
class Queued:
    """A run waiting for a slot (ordered by id: older runs start first)."""

    run_id: int
    automation: str = field(compare=False)
    not_before: datetime | None = field(compare=False, default=None)


def max_instances(catalog: Catalog, name: str) -> int:
    """How many runs of an automation may execute at once (one, if it is gone)."""
    automation = catalog.automations.get(name)
    return automation.policies.concurrency.max_instances if automation else 1


class Admission:
    """The queue of runs not started yet, in start order."""

    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._queue: list[Queued] = []

    def __contains__(self, run_id: object) -> bool:
        return any(q.run_id == run_id for q in self._queue)

    def ids(self) -> list[int]:
        """Ids of the queued runs, in start order."""
        return [q.run_id for q in self._queue]

    def add(self, run_id: int, automation: str, not_before: datetime | None) -> bool:
        """Queue a run; False when it is queued already."""
        if run_id in self:
            return False
        self._queue.append(Queued(run_id, automation, not_before))
        self._queue.sort()
        return True

    def remove(self, run_id: int) -> bool:
        """Take a run out of the queue; False when it was not there."""
        for q in self._queue:
            if q.run_id == run_id:
                self._queue.remove(q)
                return True
        return False

    def admit(
        self, running: Sequence[str], catalog: Catalog, now: datetime
    ) -> tuple[list[Queued], float | None]:
        """Take the queued runs that may start now, given the automations of the runs
        `running`; and the seconds until a delayed retry becomes due (None: none waits)."""
        per_automation: dict[str, int] = {}
        for name in running:
            per_automation[name] = per_automation.get(name, 0) + 1
        busy = len(running)
        taken: list[Queued] = []
        next_due: float | None = None
        for q in list(self._queue):
            if busy >= self.max_runs:
                break
            if q.not_before is not None and q.not_before > now:
                wait = (q.not_before - now).total_seconds()
                next_due = wait if next_due is None else min(next_due, wait)
                continue
            if per_automation.get(q.automation, 0) >= max_instances(catalog, q.automation):
                continue
            self._queue.remove(q)
            per_automation[q.automation] = per_automation.get(q.automation, 0) + 1
            busy += 1
            taken.append(q)
        return taken, next_due

    def reasons(
        self, running: Mapping[int, str], catalog: Catalog, now: datetime
    ) -> dict[int, str]:
        """Why each queued run has not started yet (`running`: run id → automation), in the
        words of the setting that holds it."""
        by_automation: dict[str, list[int]] = {}
        for run_id, name in running.items():
            by_automation.setdefault(name, []).append(run_id)
        reasons: dict[int, str] = {}
        for q in self._queue:
            limit = max_instances(catalog, q.automation)
            ahead = sorted(by_automation.get(q.automation, []))
            if q.not_before is not None and q.not_before > now:
                reasons[q.run_id] = f"a retry, due at {q.not_before:%H:%M:%S} UTC"
            elif len(ahead) >= limit:
                reasons[q.run_id] = f"queued behind run {ahead[0]}, max_instances {limit}"
            elif len(running) >= self.max_runs:
                reasons[q.run_id] = f"all {self.max_runs} run slots are busy (max_runs)"
            else:
                reasons[q.run_id] = "starting"
        return reasons
