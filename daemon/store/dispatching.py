"""The dispatch transaction: an event, what it meant for each automation and the runs it
starts, stored together — with the guards (dedup window, one active run per key, throttle)
decided inside the same transaction, so two replicas cannot both start what one may."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..durations import format_duration
from ..secrets import redactor
from .requests import Decision, Dispatched, DispatchRequest, NewRun
from .run_queries import new_run_row
from .tables import DECISIONS, EVENTS, RUNS, SCHEDULES, utcnow

_ACTIVE = ("queued", "running", "waiting", "paused")


class DispatchTransaction:
    """Writes batches of `DispatchRequest`s, each batch in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._insert: Callable[..., Any] = (
            pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        )
        # Built once: executing with parameters reuses SQLAlchemy's compiled form.
        self._insert_event = self._insert(EVENTS).on_conflict_do_nothing().returning(EVENTS.c.id)
        self._insert_events = (
            self._insert(EVENTS).on_conflict_do_nothing().returning(EVENTS.c.id, EVENTS.c.key)
        )
        self._insert_run = insert(RUNS).returning(RUNS.c.id)

    def write(self, requests: Sequence[DispatchRequest]) -> list[Dispatched | None]:
        """Store events, their decisions and runs in one transaction.

        An event whose key (or identity) was stored before yields None: a redelivery, or a
        schedule slot another replica fired already. Keyed events of a batch go in as one
        multi-row insert and all decisions as one executemany: a burst costs a few
        statements, not two each.
        """
        with self._engine.begin() as conn:
            stored = self._insert_keyed(conn, requests)
            decision_rows: list[dict[str, Any]] = []
            out: list[Dispatched | None] = []
            for req in requests:
                if req.key is not None and len(requests) > 1:
                    event_id = stored.pop(req.key, None)  # popped: a repeat in the batch is None
                else:
                    event_id = self._insert_one(conn, req)
                out.append(
                    None if event_id is None else self._decide(conn, req, event_id, decision_rows)
                )
            if decision_rows:
                conn.execute(insert(DECISIONS), decision_rows)
            return out

    def _insert_keyed(
        self, conn: Connection, requests: Sequence[DispatchRequest]
    ) -> dict[str, int]:
        """Insert the batch's keyed events at once; key → id of those that were new."""
        if len(requests) < 2:
            return {}
        rows = {r.key: _event_row(r) for r in requests if r.key is not None}
        if not rows:
            return {}
        # executemany with RETURNING: SQLAlchemy sends it as multi-row INSERTs
        # ("insertmanyvalues"), compiled once and cached.
        result = conn.execute(self._insert_events, list(rows.values()))
        return {str(key): int(event_id) for event_id, key in result}

    def _insert_one(self, conn: Connection, req: DispatchRequest) -> int | None:
        event_id = conn.execute(self._insert_event, _event_row(req)).scalar()
        return None if event_id is None else int(event_id)

    def _decide(
        self,
        conn: Connection,
        req: DispatchRequest,
        event_id: int,
        decision_rows: list[dict[str, Any]],
    ) -> Dispatched:
        """Runs and decision rows for a stored event (decisions are inserted by the caller)."""
        out = Dispatched(event_id)
        now = req.received_at or utcnow()
        for d in req.decisions:
            run_id = d.run_id
            supersedes: list[int] = []
            if d.run is not None and d.run.guard is not None:
                verdict, detail, supersedes = guard(conn, d.run, now)
                if verdict is not None:
                    d = Decision(d.automation, verdict, detail)
            if d.run is not None:
                run = new_run_row(d.run, out.event_id, now)
                values = run.model_dump(exclude={"id"})
                run.id = run_id = conn.execute(self._insert_run, values).scalar_one()
                out.runs.append(run)
                out.superseded.update(dict.fromkeys(supersedes, run_id))
            decision_rows.append(
                {
                    "event_id": out.event_id,
                    "automation": d.automation,
                    "decision": d.decision,
                    "detail": d.detail,
                    "run_id": run_id,
                }
            )
        if req.schedule_mark is not None:
            automation, trigger_key, at = req.schedule_mark
            upsert = self._insert(SCHEDULES).values(
                automation=automation, trigger_key=trigger_key, last_fire_at=at
            )
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["automation", "trigger_key"],
                    set_={"last_fire_at": upsert.excluded.last_fire_at},
                    where=SCHEDULES.c.last_fire_at < upsert.excluded.last_fire_at,
                )
            )
        return out


def _event_row(req: DispatchRequest) -> dict[str, Any]:
    return {
        "source": req.source,
        "type": req.type,
        "key": req.key,
        "identity": req.identity,
        "received_at": req.received_at or utcnow(),
        "payload": redactor.redact_json_text(req.payload_json)
        if req.payload_json is not None
        else redactor.redact_json(req.payload),
    }


def guard(conn: Connection, new: NewRun, now: datetime) -> tuple[str | None, str, list[int]]:
    """(decision that replaces `matched`, detail, runs to supersede) for a would-be run."""
    rules = new.guard
    assert rules is not None
    runs = RUNS.c
    same = (runs.automation == new.automation) & (
        runs.key.is_(None) if new.key is None else runs.key == new.key
    )
    if new.key is not None and rules.dedup_window > timedelta(0):
        prior = conn.execute(
            select(runs.id)
            .where(same, runs.created_at >= now - rules.dedup_window)
            .order_by(runs.id.desc())
            .limit(1)
        ).scalar()
        if prior is not None:
            return "deduplicated", f"key {new.key!r} started run {prior} within the window", []
    supersede: list[int] = []
    if new.key is not None and rules.on_active != "queue":
        active = list(conn.execute(select(runs.id).where(same, runs.status.in_(_ACTIVE))).scalars())
        if active and rules.on_active == "leave":
            return "deduplicated", f"run {active[0]} for key {new.key!r} is still active", []
        supersede = active
    if rules.throttle is not None:
        limit, per = rules.throttle
        count = conn.execute(
            select(func.count()).select_from(RUNS).where(same, runs.created_at >= now - per)
        ).scalar_one()
        if count >= limit:
            scope = f"key {new.key!r}" if new.key is not None else "this automation"
            return "throttled", f"{count} runs for {scope} in the last {format_duration(per)}", []
    if rules.cost_cap is not None:
        cap, per = rules.cost_cap
        spent = conn.execute(
            select(func.coalesce(func.sum(runs.cost_usd), 0.0)).where(
                same, runs.created_at >= now - per
            )
        ).scalar_one()
        if spent >= cap:
            return "throttled", cost_capped(new.key, float(spent), cap, per), []
    return None, "", supersede


def cost_capped(key: str | None, spent: float, cap: float, per: timedelta) -> str:
    """Why no more runs start (or a run stops) under `policies.cost_cap`."""
    scope = f"key {key!r}" if key is not None else "this automation"
    return (
        f"runs for {scope} cost ${spent:.2f} in the last {format_duration(per)}, "
        f"the cap is ${cap:.2f} (policies.cost_cap)"
    )
