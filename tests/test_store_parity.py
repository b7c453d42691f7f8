"""One parity suite for the store: every operation, on SQLite's fast row path, on SQLite
through SQLAlchemy, and on PostgreSQL, gives the same answers.

The scenario below calls each public operation of `Store` at a frozen clock and records what
it returned (rows as plain dicts, errors by type and message); the three records must be
equal. A new store operation belongs in the scenario.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from sqlmodel import SQLModel

from daemon.errors import NightshiftError
from daemon.store import Decision, DispatchRequest, NewRun, RunGuard, Store

T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def plain(value: Any) -> Any:
    """A result as comparable data: rows and records as dicts, containers walked."""
    if isinstance(value, SQLModel):
        return {"<row>": type(value).__name__, **plain(value.model_dump())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"<record>": type(value).__name__, **plain(dataclasses.asdict(value))}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Recorder:
    """Calls store operations and keeps what each one answered, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.answers: list[tuple[str, Any]] = []

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except NightshiftError as exc:
            self.answers.append((fn.__name__, {"<error>": type(exc).__name__, "text": str(exc)}))
            return None
        self.answers.append((fn.__name__, plain(result)))
        return result


def scenario(store: Store) -> list[tuple[str, Any]]:
    """Every store operation, in an order that reaches each of its branches."""
    do = Recorder(store)
    s = store
    guard = RunGuard(dedup_window=timedelta(minutes=5))
    once = RunGuard(on_active="leave", throttle=(2, timedelta(hours=1)))
    replace = RunGuard(on_active="replace")
    with freeze_time(T0) as clock:
        first = do(
            s.dispatch,
            source="github",
            type="issues",
            key="d1",
            identity="github:issues:abc",
            payload={"token": "ghp_" + "a" * 36, "n": 1},
            decisions=[
                Decision("triage", "matched", run=NewRun("triage", "issues", {"n": 1}, key="k")),
                Decision("other", "filtered", "when: false"),
            ],
            schedule_mark=("nightly", "cron:0", T0),
        )
        run = first.runs[0].id
        do(  # a burst: two keyed events and one unkeyed, one transaction
            s.dispatch_many,
            [
                DispatchRequest(
                    "manual",
                    "trigger",
                    {"i": i},
                    key=f"b{i}",
                    received_at=T0,
                    decisions=[
                        Decision("lint", "matched", run=NewRun("lint", "manual", {}, guard=once))
                    ],
                )
                for i in range(3)
            ]
            + [DispatchRequest("manual", "trigger", {"x": 1}, received_at=T0)],
        )
        do(  # the dedup window holds a second event for the same key
            s.dispatch,
            source="github",
            type="issues",
            key="d2",
            received_at=T0,
            payload={},
            decisions=[
                Decision("triage", "matched", run=NewRun("triage", "x", {}, key="k", guard=guard))
            ],
        )
        do(
            s.dispatch,
            source="github",
            type="issues",
            key="d3",
            received_at=T0,
            payload={},
            decisions=[
                Decision("triage", "matched", run=NewRun("triage", "x", {}, key="k", guard=replace))
            ],
        )
        retry = do(s.create_run, NewRun("triage", "retry", {"n": 1}, attempt=2, retry_of=run))
        do(s.runs_for_event_key, "d1")
        do(s.get_run, run)
        do(s.get_run, 9999)
        do(s.list_runs)
        do(s.list_runs, automation="lint", statuses=["queued"], limit=2, oldest_first=True)
        clock.tick(timedelta(seconds=3))
        do(s.start_run, run, datetime.now(UTC), "replica-a")
        do(s.start_run, run, datetime.now(UTC), "replica-b")  # taken already
        do(s.update_run, retry.id, summary="token ghp_" + "b" * 36)
        do(s.update_run, 9999, status="failed")
        do(s.append_run_event, run, "step", {"title": "one"})
        do(s.append_run_event, run, "message", {"text": "two"}, datetime.now(UTC))
        do(s.append_run_event, run, "step", {"title": "three"}, seq=3)
        do(s.append_run_event, retry.id, "step", {"title": "retry's first"})
        do(s.run_events, run)
        do(s.run_events, run, after_seq=1, type="step")
        do(s.last_events, [run, retry.id, 9999])
        do(s.last_events, [run], types=["message"])
        do(s.last_events, [])
        do(s.latest_runs)
        do(s.history)
        do(s.history, automations=["lint", "triage"], statuses=["queued"], limit=2)
        do(s.history, trigger="issu", since=T0, until=T0 + timedelta(days=1), before_id=3)
        do(s.history, trigger="100%_")  # LIKE's wildcards are text here
        do(s.events_with_decisions)
        do(s.events_with_decisions, limit=2, before_id=4, source="manual")
        do(s.list_events)
        do(s.list_events, limit=2, source="manual")
        do(s.get_event, first.event_id)
        do(s.get_event, 9999)
        do(s.create_approval, run, "a1", "push", "push with ghp_" + "c" * 36, T0)
        do(s.create_approval, run, "a2", "merge", "merge it", None)
        do(s.create_approval, run, "a3", "deploy", "deploy it", None)
        clock.tick(timedelta(seconds=1))
        do(s.decide_approval, run, "a1", "approved", "ann", "looks right")
        do(s.decide_approval, run, "a1", "denied", "bob", None)
        do(s.decide_approval, run, "nope", "denied", "bob", None)
        do(s.approvals, run)
        do(s.approvals, run, status="pending")
        do(s.open_approvals)
        parent = do(s.add_outbox, run, "#ops", "parent", {"text": "started"}, None)
        step = do(s.add_outbox, run, "#ops", "step", {"text": "step"}, parent.id)
        do(s.add_outbox, retry.id, "#ops", "parent", {"text": "retry"}, None)
        do(s.outbox)
        do(s.outbox, run_id=run, status="pending", limit=1)
        do(s.pending_outbox)
        do(s.pending_outbox, after_id=parent.id, limit=1)
        do(s.pending_outbox, 0, 200, ["replica-a"])  # replica-a's run: its items are its own
        clock.tick(timedelta(seconds=1))
        do(s.mark_outbox, [parent.id], "sent", ts="1.1", channel_id="C1", thread_ts="1.1")
        do(s.mark_outbox, [step.id], "failed", error="channel_not_found")
        do(s.mark_outbox, [], "sent")
        do(s.get_outbox, parent.id)
        do(s.get_outbox, 9999)
        do(s.run_for_thread, "C1", "1.1")
        do(s.run_for_thread, "C1", "2.2")
        do(s.parent_outbox, run)
        do(s.parent_outbox, 9999)
        do(s.current_attempt, run)
        do(s.attempts, retry.id)
        do(s.first_attempt, retry.id)
        clock.tick(timedelta(seconds=1))
        do(s.end_run, run, "succeeded", "done with ghp_" + "d" * 36, datetime.now(UTC))
        do(s.end_run, 9999, "failed", "", datetime.now(UTC))
        do(s.approvals, run)
        do(s.open_approvals)
        do(s.last_fire, "nightly", "cron:0")
        do(s.last_fire, "nightly", "cron:1")
        do(s.mark_schedule, "nightly", "cron:0", T0 + timedelta(hours=1))
        do(s.mark_schedule, "nightly", "cron:0", T0)  # never backwards
        do(s.mark_schedule, "weekly", "cron:0", T0)
        do(s.last_fire, "nightly", "cron:0")
        do(s.last_fire, "weekly", "cron:0")
        do(s.review_comments, run)
        do(s.add_review, run, [("calc.py", 3, "    return a - b", "why minus?")], "web:ann")
        do(s.add_review, run, [("a.py", 1, "x = 1", "ghp_" + "e" * 36), ("b.py", 2, "", "ok")], "b")
        do(s.review_comments, run)
        do(s.add_usage, run, 1200, 0.25)
        do(s.add_usage, run, 800, 0.5)
        do(s.add_usage, 9999, 1, 0.1)
        do(s.spent, "triage", "k", T0 - timedelta(days=1))
        do(s.spent, "triage", "k", T0 + timedelta(days=1))  # created before the window
        do(s.spent, "lint", None, T0 - timedelta(days=1))
        capped = RunGuard(cost_cap=(0.75, timedelta(days=1)))
        held = do(  # the key's runs cost $0.75: the cap holds the next one
            s.dispatch,
            source="github",
            type="issues",
            key="d4",
            received_at=datetime.now(UTC),
            payload={},
            decisions=[
                Decision("triage", "matched", run=NewRun("triage", "x", {}, key="k", guard=capped))
            ],
        )
        do(s.get_event, held.event_id)
        do(s.status_comment, run)
        do(s.keep_status_comment, run, "o/r", 7, 3_000_000_001)  # past 2**31, as on GitHub
        do(s.keep_status_comment, run, "o/r", 7, 3_000_000_002)
        do(s.status_comment, run)
        hour = timedelta(hours=1)
        do(s.claim_refusal, "o/r#7", "Eve", hour)
        do(s.claim_refusal, "o/r#7", "eve", hour)  # told already
        do(s.claim_refusal, "o/r#8", "eve", hour)  # another conversation
        clock.tick(hour)
        do(s.claim_refusal, "o/r#7", "eve", hour)  # the hour has passed
        do(s.owner_of, run)
        do(s.owner_of, 9999)
        do(s.claim_ended, run, "replica-a", "replica-c")  # ended, held by replica-a: taken
        do(s.claim_ended, run, "replica-a", "replica-d")  # taken already
        do(s.claim_ended, retry.id, "replica-c", "replica-d")  # not ended: recovery's to take
        do(s.claim_run, run, "replica-a", "replica-b")
        do(s.owner_of, run)
        do(s.claim_run, run, "replica-a", "replica-c")  # claimed already
        do(s.claim_run, retry.id, None, "replica-c")
        do(s.register_replica, "replica-a", "host-a", 101)
        do(s.register_replica, "replica-b", "host-b", 102)
        clock.tick(timedelta(seconds=40))
        do(s.beat, "replica-b")
        do(s.beat, "nobody")
        do(s.live_replicas, timedelta(seconds=30))
        do(s.forget_replica, "replica-b")
        do(s.forget_replica, "nobody")
        do(s.live_replicas, timedelta(days=1))
        do(s.paused_automations)
        do(s.set_paused, "nightly", True, "web:ann")
        do(s.set_paused, "weekly", True, "web:bob")
        do(s.set_paused, "weekly", False, "web:ann")
        do(s.paused_automations)
        do(s.record_refusal, "github", "x-1", 401, "bad signature", "127.0.0.1")
        do(s.refusals)
        do(s.refusals, limit=0)

        async def on_the_loop() -> None:
            logged = [await s.log(retry.id, "step", {"title": str(i)}) for i in range(3)]
            do(lambda: logged)
            # Read on the store thread, which writes what `log` handed over first.
            written = await s.call(s.run_events, retry.id)
            do(lambda: written)
            submitted = await s.submit(DispatchRequest("manual", "trigger", {}, key="late"))
            do(lambda: submitted)
            do(lambda: s.get_run.__name__)  # the store thread still answers after the loop

        asyncio.run(on_the_loop())
        # Last, as PostgreSQL spends a sequence number on a conflicting insert and SQLite
        # does not: ids stay comparable up to here.
        do(s.create_approval, run, "a1", "push", "again", None)
        do(s.dispatch, source="github", type="issues", key="d1", payload={})
        do(s.dispatch, source="github", type="issues", identity="github:issues:abc", payload={})
    return do.answers


def answers_on(path: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[Any]:
    if path == "postgres":
        store = Store(str(request.getfixturevalue("pg_schema_url")))
    else:
        url = f"sqlite:///{tmp_path / (path + '.sqlite')}"
        store = Store(url, checkpoint=False, fast_path=path == "sqlite-fast")
    store.create_all()
    try:
        return scenario(store)
    finally:
        store.close()


def test_every_operation_answers_alike_on_every_path(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fast = answers_on("sqlite-fast", tmp_path, request)
    # The scenario reached what it means to: errors where it asked for them, masking, and
    # the operations only the event loop calls.
    errors = [a["<error>"] for _, a in fast if isinstance(a, dict) and "<error>" in a]
    assert errors == ["RunNotFound", "RunNotFound", "RunNotFound", "RunNotFound", "StoreError"]
    assert [a for name, a in fast if name == "claim_refusal"] == [True, False, True, True]
    spent = [a for name, a in fast if name == "spent"]
    assert spent == [0.75, 0.0, 0.0]
    names = [name for name, _ in fast]
    at = names.index("spent") + 3  # the dispatch the cost cap holds: stored, starting nothing
    assert fast[at][0] == "dispatch" and fast[at][1]["runs"] == []
    assert fast[at + 1][1][1][0]["decision"] == "throttled"
    for secret in "abcde":
        assert "ghp_" + secret * 36 not in repr(fast)
    assert fast[-2:] == [("dispatch", None), ("dispatch", None)]  # redelivered
    for path in ("sqlite-portable", "postgres"):
        other = answers_on(path, tmp_path, request)
        assert len(other) == len(fast)
        for (name, theirs), (_, ours) in zip(other, fast, strict=True):
            assert (path, name, theirs) == (path, name, ours)
