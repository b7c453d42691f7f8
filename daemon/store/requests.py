"""What the store is asked to write when an event arrives: the event, its decisions per
automation and the runs they start, in one transaction — the types both the in-process store
and the writer process speak."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .tables import RunRow


@dataclass
class NewRun:
    """A run to create together with its event."""

    automation: str
    trigger: str
    inputs: dict[str, Any]
    attempt: int = 1
    retry_of: int | None = None
    not_before: datetime | None = None
    key: str | None = None
    guard: RunGuard | None = None
    untrusted: bool = False  # no secrets, no network, no GitHub (a fork's pull request)


@dataclass(frozen=True)
class RunGuard:
    """Checks made in the transaction that would create a run (dedup, throttle, active, cost)."""

    dedup_window: timedelta = timedelta(0)
    throttle: tuple[int, timedelta] | None = None
    on_active: str = "queue"
    cost_cap: tuple[float, timedelta] | None = None  # USD per window


@dataclass
class Decision:
    """What an event means for one automation; `run` is set when it starts one."""

    automation: str
    decision: str
    detail: str = ""
    run: NewRun | None = None
    run_id: int | None = None  # an existing run the event concerns (an alert's resolve)


@dataclass
class Dispatched:
    """The outcome of a dispatch: the stored event's id and the runs it created."""

    event_id: int
    runs: list[RunRow] = field(default_factory=list)
    superseded: dict[int, int] = field(default_factory=dict)  # old run id -> new run id


@dataclass
class DispatchRequest:
    """An event to store with its decisions (and the runs they start) in one transaction.

    `key` makes it idempotent, and so does `identity` (what the payload says it is, where it
    says so: an event whose key or identity was stored before is a duplicate);
    `schedule_mark` (automation, trigger key, slot) advances a schedule in the same
    transaction. `received_at` is the clock of every check and row of
    the dispatch (guard windows, the runs' `created_at`), so it is set where the event
    arrives, not where it happens to be written. `payload_json` is the payload already
    serialised (as the writer process receives it); it wins over `payload`.
    """

    source: str
    type: str
    payload: dict[str, Any]
    key: str | None = None
    decisions: Sequence[Decision] = ()
    received_at: datetime | None = None
    schedule_mark: tuple[str, str, datetime] | None = None
    payload_json: str | None = None
    identity: str | None = None
