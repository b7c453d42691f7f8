"""Runs and their logs, as the executor, the CLI and the reporters read them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ..errors import RunNotFound
from ..secrets import redactor
from .repository import Repository
from .requests import NewRun
from .tables import RUNS, DecisionRow, EventRow, RunEventRow, RunRow, utcnow


def new_run_row(new: NewRun, event_id: int | None, now: datetime | None = None) -> RunRow:
    """The row of a queued run, its inputs masked."""
    return RunRow(
        automation=new.automation,
        trigger=new.trigger,
        event_id=event_id,
        inputs=redactor.redact_obj(new.inputs),
        attempt=new.attempt,
        retry_of=new.retry_of,
        not_before=new.not_before,
        key=new.key,
        untrusted=new.untrusted,
        created_at=now or utcnow(),
    )


class RunQueries(Repository):
    """Runs, their chains of attempts, their logs, and the events that started them."""

    def create_run_once(self, new: NewRun, event_id: int | None = None) -> RunRow | None:
        """Create a queued run, unless it would be its conversation's second unfinished one
        (another replica started one meanwhile): None then."""
        try:
            return self._insert_run(new, event_id)
        except IntegrityError:
            with self._session() as s:
                taken = s.exec(
                    select(RunRow.id).where(
                        RunRow.automation == new.automation,
                        RunRow.key == new.key,
                        col(RunRow.finished_at).is_(None),
                        col(RunRow.trigger).startswith("github_mention:"),
                    )
                ).first()
            if taken is None:
                raise  # some other constraint: not the conversation's
            return None

    def create_run(self, new: NewRun, event_id: int | None = None) -> RunRow:
        """Create a queued run outside an event (retries)."""
        return self._insert_run(new, event_id)

    def _insert_run(self, new: NewRun, event_id: int | None) -> RunRow:
        with self._session() as s:
            run = new_run_row(new, event_id)
            s.add(run)
            s.commit()
            return run

    def runs_for_event_key(self, key: str) -> list[RunRow]:
        """Runs started by the event stored under `key`."""
        with self._session() as s:
            q = (
                select(RunRow)
                .join(EventRow, col(EventRow.id) == col(RunRow.event_id))
                .where(EventRow.key == key, col(RunRow.retry_of).is_(None))
            )
            return list(s.exec(q.order_by(col(RunRow.id))))

    def list_runs(
        self,
        *,
        automation: str | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> list[RunRow]:
        """Runs, newest first unless `oldest_first`."""
        with self._session() as s:
            q = select(RunRow)
            if automation:
                q = q.where(RunRow.automation == automation)
            if statuses is not None:
                q = q.where(col(RunRow.status).in_(list(statuses)))
            order = col(RunRow.id).asc() if oldest_first else col(RunRow.id).desc()
            return list(s.exec(q.order_by(order).limit(limit)))

    def update_run(self, run_id: int, **fields: Any) -> RunRow:
        """Set fields of a run (status, started_at, finished_at, summary…)."""
        with self._session() as s:
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            for name, value in fields.items():
                if name == "summary" and isinstance(value, str):
                    value = redactor.redact(value)
                setattr(run, name, value)
            s.add(run)
            s.commit()
            return run

    def claim_run(self, run_id: int, from_owner: str | None, to_owner: str | None) -> bool:
        """Make `to_owner` the owner of an executing run still owned by `from_owner`: True for
        the one replica whose claim took it (a gone replica's run is recovered once). None
        lets it go: the next claim from None takes it."""
        with self._session() as s:
            runs = RUNS
            owned = runs.c.owner.is_(None) if from_owner is None else runs.c.owner == from_owner
            taken = s.connection().execute(
                update(runs)
                .where(runs.c.id == run_id, owned, runs.c.finished_at.is_(None))
                .values(owner=to_owner)
            )
            s.commit()
            return bool(taken.rowcount == 1)

    def add_usage(self, run_id: int, tokens: int, cost_usd: float) -> RunRow:
        """Add an agent's usage report to the run's totals (one atomic update: reports of
        one run never race, but the sum must not depend on it)."""
        with self._session() as s:
            runs = RUNS.c
            s.connection().execute(
                update(RUNS)
                .where(runs.id == run_id)
                .values(tokens=runs.tokens + tokens, cost_usd=runs.cost_usd + cost_usd)
            )
            s.commit()
            run = s.get(RunRow, run_id)
            if run is None:
                raise RunNotFound(run_id)
            s.refresh(run)
            return run

    def spent(self, automation: str, key: str | None, since: datetime) -> float:
        """USD the runs of `automation` for `key` (all its runs when None) created since
        `since` have cost: what a cost cap is held against."""
        with self._session() as s:
            runs = RUNS.c
            same = runs.key.is_(None) if key is None else runs.key == key
            q = select(func.coalesce(func.sum(runs.cost_usd), 0.0)).where(
                runs.automation == automation, same, runs.created_at >= since
            )
            return float(s.exec(q).one())

    def owner_of(self, run_id: int) -> str | None:
        """The replica holding `run_id` now (None: none took it yet, or it is unknown)."""
        with self._session() as s:
            q = select(RunRow.owner).where(RunRow.id == run_id)
            return s.exec(q).first()

    def claim_ended(self, run_id: int, from_owner: str, to_owner: str) -> bool:
        """Make `to_owner` the holder of an ended run still held by `from_owner` (a replica
        that is gone): True for the one replica whose claim took it, which then delivers
        what the run left to say."""
        with self._session() as s:
            runs = RUNS.c
            taken = s.connection().execute(
                update(RUNS)
                .where(runs.id == run_id, runs.owner == from_owner, runs.finished_at.is_not(None))
                .values(owner=to_owner)
            )
            s.commit()
            return bool(taken.rowcount == 1)

    def current_attempt(self, run_id: int) -> int:
        """The newest retry in `run_id`'s chain of attempts (itself when never retried)."""
        with self._session() as s:
            while True:
                q = (
                    select(RunRow.id)
                    .where(RunRow.retry_of == run_id)
                    .order_by(col(RunRow.id).desc())
                )
                nxt = s.exec(q).first()
                if nxt is None:
                    return run_id
                run_id = nxt

    def attempts(self, run_id: int) -> list[RunRow]:
        """`run_id`'s chain of attempts up to it, first first."""
        chain: list[RunRow] = []
        with self._session() as s:
            next_id: int | None = run_id
            while next_id is not None:
                run = s.get(RunRow, next_id)
                if run is None:
                    break
                chain.append(run)
                next_id = run.retry_of
        return chain[::-1]

    def first_attempt(self, run_id: int) -> int:
        """The first run of `run_id`'s chain of retries."""
        with self._session() as s:
            while True:
                run = s.get(RunRow, run_id)
                if run is None or run.retry_of is None:
                    return run_id
                run_id = run.retry_of

    def run_events(
        self, run_id: int, after_seq: int = 0, type: str | None = None
    ) -> list[RunEventRow]:
        """A run's log from `after_seq` on (only events of `type`, if given)."""
        with self._session() as s:
            q = select(RunEventRow).where(RunEventRow.run_id == run_id, RunEventRow.seq > after_seq)
            if type is not None:
                q = q.where(RunEventRow.type == type)
            return list(s.exec(q.order_by(col(RunEventRow.seq))))

    def last_events(
        self, run_ids: Iterable[int], types: Iterable[str] = ("step", "command", "message")
    ) -> dict[int, RunEventRow]:
        """Each run's newest event of `types` (what a board shows as its last step), in one
        query for all of them."""
        ids = list(run_ids)
        if not ids:
            return {}
        with self._session() as s:
            newest = (
                select(func.max(RunEventRow.id))
                .where(col(RunEventRow.run_id).in_(ids), col(RunEventRow.type).in_(list(types)))
                .group_by(col(RunEventRow.run_id))
            )
            rows = s.exec(select(RunEventRow).where(col(RunEventRow.id).in_(newest)))
            return {row.run_id: row for row in rows}

    def history(
        self,
        *,
        automations: Iterable[str] | None = None,
        statuses: Iterable[str] | None = None,
        trigger: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        """Runs newest first, filtered, a page at a time: the page after the one that ended
        at `before_id` (keyset paging: as fast on page 200 as on page 1)."""
        with self._session() as s:
            q = select(RunRow)
            if automations is not None:
                q = q.where(col(RunRow.automation).in_(list(automations)))
            if statuses is not None:
                q = q.where(col(RunRow.status).in_(list(statuses)))
            if trigger:
                q = q.where(col(RunRow.trigger).startswith(trigger, autoescape=True))
            if since is not None:
                q = q.where(col(RunRow.created_at) >= since)
            if until is not None:
                q = q.where(col(RunRow.created_at) < until)
            if before_id is not None:
                q = q.where(col(RunRow.id) < before_id)
            return list(s.exec(q.order_by(col(RunRow.id).desc()).limit(limit)))

    def events_with_decisions(
        self, limit: int = 50, before_id: int | None = None, source: str | None = None
    ) -> list[tuple[EventRow, list[DecisionRow]]]:
        """Recent events newest first, each with what it meant per automation (two queries
        for the page, not one per event)."""
        with self._session() as s:
            q = select(EventRow)
            if source:
                q = q.where(EventRow.source == source)
            if before_id is not None:
                q = q.where(col(EventRow.id) < before_id)
            events = list(s.exec(q.order_by(col(EventRow.id).desc()).limit(limit)))
            ids = [e.id for e in events]
            decisions: dict[int, list[DecisionRow]] = {}
            if ids:
                dq = select(DecisionRow).where(col(DecisionRow.event_id).in_(ids))
                for d in s.exec(dq.order_by(col(DecisionRow.id))):
                    decisions.setdefault(d.event_id, []).append(d)
            return [(e, decisions.get(e.id or 0, [])) for e in events]

    def latest_runs(self) -> dict[str, RunRow]:
        """Each automation's newest run, in one query."""
        with self._session() as s:
            newest = select(func.max(RunRow.id)).group_by(col(RunRow.automation))
            rows = s.exec(select(RunRow).where(col(RunRow.id).in_(newest)))
            return {row.automation: row for row in rows}

    def list_events(self, limit: int = 50, source: str | None = None) -> list[EventRow]:
        """Recent events, newest first."""
        with self._session() as s:
            q = select(EventRow)
            if source:
                q = q.where(EventRow.source == source)
            return list(s.exec(q.order_by(col(EventRow.id).desc()).limit(limit)))
