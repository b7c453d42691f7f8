"""The store on SQLite and PostgreSQL: idempotent events, ordered logs, decisions taken once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, SQLModel, col, select

from daemon.runs import RunStatus
from daemon.store import Decision, DecisionRow, EventRow, NewRun, RunRow, Store, utcnow
from daemon.testing import Project, running_daemon

from .helpers import client_call, events, wait_status


def test_event_keys_make_delivery_idempotent(db_url: str) -> None:
    store = Store(db_url)
    store.create_all()
    first = store.dispatch(
        source="manual",
        type="trigger",
        key="k1",
        payload={"a": 1},
        decisions=[Decision("x", "matched", run=NewRun("x", "manual", {"n": 1}))],
    )
    assert first is not None and len(first.runs) == 1
    again = store.dispatch(
        source="manual",
        type="trigger",
        key="k1",
        payload={"a": 1},
        decisions=[Decision("x", "matched", run=NewRun("x", "manual", {"n": 1}))],
    )
    assert again is None
    assert len(store.list_runs()) == 1 and len(store.list_events()) == 1
    run_id = first.runs[0].id
    assert run_id is not None
    seqs = [
        store.append_run_event(run_id, "step", {"type": "step", "title": str(i)}).seq
        for i in range(5)
    ]
    assert seqs == [1, 2, 3, 4, 5]
    assert [r.data["title"] for r in store.run_events(run_id, after_seq=3)] == ["3", "4"]
    store.append_run_event(run_id, "artifact", {"type": "artifact", "kind": "link", "url": "u"})
    assert [r.seq for r in store.run_events(run_id, type="artifact")] == [6]
    store.create_approval(run_id, "a1", "push", "push it", None)
    assert store.decide_approval(run_id, "a1", "approved", "ann", None) is not None
    assert store.decide_approval(run_id, "a1", "denied", "bob", None) is None  # second click
    assert store.approvals(run_id)[0].decided_by == "ann"
    store.close()


def test_two_replicas_taking_the_same_runs_take_each_once(db_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from daemon.store.store import utcnow

    first, second = Store(db_url), Store(db_url)  # two daemons on one database
    first.create_all()
    runs: list[int] = []
    for _ in range(20):
        run_id = first.create_run(NewRun("x", "manual", {})).id
        assert run_id is not None
        runs.append(run_id)

    def take(store: Store) -> list[int]:
        return [run_id for run_id in runs if store.start_run(run_id, utcnow()) is not None]

    with ThreadPoolExecutor(2) as pool:
        took = [f.result() for f in [pool.submit(take, first), pool.submit(take, second)]]
    assert sorted(took[0] + took[1]) == runs  # each once, by one of the two
    run_id = runs[0]
    taken = first.get_run(run_id)
    assert taken.status == "running" and taken.started_at is not None
    # Ended, its pending approval expiring with it: nobody takes it again.
    first.create_approval(run_id, "a1", "push", "push it", None)
    ended = first.end_run(run_id, "failed", "it broke", utcnow())
    assert ended.status == "failed" and ended.summary == "it broke"
    assert ended.finished_at is not None
    (approval,) = first.approvals(run_id)
    assert (approval.status, approval.reason) == ("expired", "run ended (failed)")
    assert second.start_run(run_id, utcnow()) is None
    first.close()
    second.close()


async def test_a_run_end_to_end_on_postgresql(project: Project, pg_schema_url: str) -> None:
    project.skill(
        "hello",
        """\
        import json, sys
        ctx = json.loads(sys.stdin.readline())
        print(json.dumps({"type": "message", "text": f"hello {ctx['inputs']['who']}"}))
        """,
        inputs={"who": {"type": "string", "default": "world"}},
    )
    project.automation("hello", skill="hello")
    async with running_daemon(project.config(database_url=pg_schema_url)) as d:
        assert d.store.dialect == "postgresql"
        run_id = await client_call(d, "trigger", "hello", {"who": "postgres"})
        run = await wait_status(d, run_id, RunStatus.SUCCEEDED)
        assert run.started_at is not None and run.started_at.tzinfo is not None
        assert [e["text"] for e in await events(d, run_id) if e["type"] == "message"] == [
            "hello postgres"
        ]


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_group_commit_keeps_each_delivery_exact(db_url: str, writer: str) -> None:
    import asyncio

    from daemon.errors import StoreError
    from daemon.store import DispatchRequest

    store = Store(db_url)
    store.create_all()
    if writer == "process":
        starting = store.start_writer_process()
        assert starting is not None
        await starting
        assert store.writes_in_process
    requests = [
        DispatchRequest(source="github", type="issues.opened", key=f"k{i // 2}", payload={"i": i})
        for i in range(40)  # every key twice: one of each pair is a duplicate
    ]
    poison = DispatchRequest(
        source="github",
        type="x",
        key="poison",
        payload={},
        decisions=[Decision("x", "matched", run=NewRun("x", "manual", {"bad": {1, 2}}))],
    )
    unkeyed = DispatchRequest(source="manual", type="trigger", payload={"ok": True})
    results = await asyncio.gather(
        *(store.submit(r) for r in requests[:20]),
        store.submit(poison),
        *(store.submit(r) for r in requests[20:]),
        store.submit(unkeyed),
        store.submit(unkeyed),  # no key: never a duplicate
        return_exceptions=True,
    )
    assert all(r is not None and not isinstance(r, BaseException) for r in results[-2:])
    del results[-2:]
    poisoned = results.pop(20)
    assert isinstance(poisoned, StoreError)
    assert "not JSON serializable" in str(poisoned)
    stored = [r for r in results if r is not None]
    assert len(stored) == 20 and results.count(None) == 20
    assert sorted(e.key or "" for e in store.list_events(limit=100)) == sorted(
        [*(f"k{i}" for i in range(20)), "", ""]
    )
    await store.stop_writer_process()
    store.close()


def test_the_per_step_writes_store_timestamps_as_core_does(tmp_path: Path) -> None:
    import sqlite3
    from datetime import UTC, datetime

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.create_all()
    whole = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)  # no microseconds: the tricky case
    first = store.dispatch(source="manual", type="trigger", payload={}, received_at=whole)
    assert first is not None
    run = store.create_run(NewRun("x", "manual", {}))
    assert run.id is not None
    store.append_run_event(run.id, "step", {"type": "step", "title": "t"}, at=whole)
    store.add_outbox(run.id, "C1", "reply", {"text": "t"}, None)
    store.close()
    with sqlite3.connect(tmp_path / "x.db") as db:
        (core,) = db.execute("select received_at from events").fetchone()
        (hot,) = db.execute("select at from run_events").fetchone()
        (created,) = db.execute("select created_at from outbox").fetchone()
    assert hot == core == "2026-11-24 10:00:00.000000"
    assert len(created) == len(core)  # same shape, so text comparisons in SQL stay right
    reread = Store(f"sqlite:///{tmp_path / 'x.db'}")
    assert reread.run_events(run.id)[0].at == whole
    reread.close()


def test_delivery_outcomes_are_recorded_alike_on_both_dialects(db_url: str) -> None:
    store = Store(db_url)
    store.create_all()
    run = store.create_run(NewRun("x", "manual", {}))
    assert run.id is not None
    parent, reply, lost = (
        store.add_outbox(run.id, "#ops", kind, {"text": kind}, None).id
        for kind in ("parent", "reply", "lost")
    )
    store.mark_outbox([parent], "sent", ts="1.1", channel_id="C1")
    store.mark_outbox([reply], "pending", error="ratelimited")  # to be tried again
    store.mark_outbox([reply, lost], "sent", ts="1.2", thread_ts="1.1")
    store.mark_outbox([lost], "failed", error="channel_not_found")
    store.mark_outbox([], "failed")
    rows = {row.id: row for row in store.outbox(run.id)}
    assert (rows[parent].status, rows[parent].ts, rows[parent].channel_id) == ("sent", "1.1", "C1")
    assert rows[parent].attempts == 1 and rows[parent].sent_at is not None
    assert rows[parent].thread_ts is None and rows[parent].error is None
    assert (rows[reply].status, rows[reply].attempts, rows[reply].error) == ("sent", 2, None)
    assert (rows[reply].ts, rows[reply].thread_ts) == ("1.2", "1.1")
    assert (rows[lost].status, rows[lost].attempts) == ("failed", 2)
    assert rows[lost].error == "channel_not_found" and rows[lost].ts == "1.2"
    store.close()


def orm(store: Store, table: type[SQLModel], key: int) -> dict[str, Any]:
    """A row as the ORM reads it, in a session of its own: the reference for plain reads."""
    with Session(store.engine) as s:
        row = s.get(table, key)
        assert row is not None
        return row.model_dump()


def orm_decisions(store: Store, event_id: int) -> list[dict[str, Any]]:
    with Session(store.engine) as s:
        q = select(DecisionRow).where(DecisionRow.event_id == event_id)
        return [d.model_dump() for d in s.exec(q.order_by(col(DecisionRow.id)))]


def test_a_run_taken_and_ended_reads_as_the_store_reads_it(db_url: str) -> None:
    from datetime import UTC, datetime

    from daemon.errors import RunNotFound
    from daemon.secrets import redactor

    store = Store(db_url)
    store.create_all()
    redactor.register("hunter2-store-secret")
    done = store.dispatch(
        source="github",
        type="issues.opened",
        key="d1",
        payload={"issue": {"number": 7, "title": "ü"}},
        decisions=[Decision("x", "matched", run=NewRun("x", "github", {"n": 1, "l": [1]}))],
    )
    assert done is not None
    run_id = done.runs[0].id
    assert run_id is not None
    started = datetime(2026, 11, 30, 9, 0, 0, 120, tzinfo=UTC)
    taken = store.start_run(run_id, started)
    assert taken is not None
    run, event = taken
    found = store.get_event(done.event_id)
    assert found is not None and event is not None
    # What the run's start hands on, and the store's plain reads, are what the ORM reads.
    assert run.model_dump() == orm(store, RunRow, run_id) == store.get_run(run_id).model_dump()
    assert event.model_dump() == orm(store, EventRow, done.event_id) == found[0].model_dump()
    assert [d.model_dump() for d in found[1]] == orm_decisions(store, done.event_id)
    assert [d.automation for d in found[1]] == ["x"]
    assert store.get_event(done.event_id + 100) is None
    with pytest.raises(RunNotFound):
        store.get_run(run_id + 100)
    assert run.started_at == started and run.inputs == {"n": 1, "l": [1]}
    assert event.payload == {"issue": {"number": 7, "title": "ü"}}
    assert event.received_at.tzinfo is not None
    store.create_approval(run_id, "a1", "push", "push it", None)
    ended = store.end_run(run_id, "failed", "died on hunter2-store-secret", started)
    assert ended.model_dump() == orm(store, RunRow, run_id) == store.get_run(run_id).model_dump()
    assert ended.summary == "died on ***" and ended.finished_at == started
    assert store.approvals(run_id)[0].status == "expired"
    with pytest.raises(RunNotFound):
        store.end_run(run_id + 100, "failed", "", started)
    manual = store.create_run(NewRun("x", "manual", {}))  # no event behind it
    assert manual.id is not None
    again = store.start_run(manual.id, started)
    assert again is not None and again[1] is None
    store.close()


async def test_a_run_log_is_numbered_at_once_and_written_in_order(db_url: str) -> None:
    from daemon.errors import StoreError

    store = Store(db_url)
    store.create_all()
    run = store.create_run(NewRun("x", "manual", {}))
    assert run.id is not None
    # The first event waits for its write (the run's place in the log); the rest do not.
    first = await store.log(run.id, "started", {"type": "started"})
    later = [await store.log(run.id, "step", {"type": "step", "title": str(i)}) for i in range(5)]
    assert first.id is not None and {e.id for e in later} == {None}
    assert [e.seq for e in [first, *later]] == [1, 2, 3, 4, 5, 6]
    # Anything that reads through the store thread reads after the writes handed to it.
    stored = await store.call(store.run_events, run.id)
    assert [(r.seq, r.data.get("title")) for r in stored[1:]] == [
        (seq, str(seq - 2)) for seq in range(2, 7)
    ]
    assert [r.at for r in stored][1:] == [e.at for e in later]
    done = await store.log(run.id, "finished", {"type": "finished", "status": "succeeded"})
    note = await store.log(run.id, "message", {"type": "message", "text": "retrying"})
    assert (done.seq, note.seq) == (7, 8) and note.id is not None  # asked the store again
    # A write that fails (here: its number taken behind the log's back) fails the next log.
    other = store.create_run(NewRun("x", "manual", {}))
    assert other.id is not None
    await store.log(other.id, "started", {"type": "started"})
    await store.call(store.append_run_event, other.id, "step", {"type": "step", "title": "x"})
    await store.log(other.id, "step", {"type": "step", "title": "collides"})
    await store.call(lambda: None)  # the failed write is done
    with pytest.raises(StoreError, match="its log could not be written"):
        await store.log(other.id, "step", {"type": "step", "title": "next"})
    store.close()


def test_the_wal_is_emptied_once_it_grows_past_its_bound_and_never_waits_long(
    tmp_path: Path,
) -> None:
    import sqlite3
    import time

    from daemon.store.engine import Checkpointer

    store = Store(f"sqlite:///{tmp_path / 'n.db'}", checkpoint=False)
    store.create_all()
    wal = tmp_path / "n.db-wal"
    run = store.create_run(NewRun("x", "manual", {}))
    assert run.id is not None
    # A reader holding its snapshot keeps the log from starting over, as a write landing
    # during every checkpoint does under continuous load.
    reader = sqlite3.connect(tmp_path / "n.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM run_events").fetchone()
    for i in range(40):
        store.append_run_event(run.id, "step", {"type": "step", "title": "x" * 2000, "i": i})
    grown = wal.stat().st_size
    checkpointer = Checkpointer(store.engine, interval=3600, truncate_at=1_000_000)
    try:
        checkpointer.checkpoint()  # below the bound: PASSIVE only, never blocking
        assert wal.stat().st_size == grown
        checkpointer._truncate_at = 10
        began = time.monotonic()
        checkpointer.checkpoint()  # past it, but the reader holds on: it gives up soon
        assert time.monotonic() - began < 5
        assert wal.stat().st_size == grown
        reader.execute("COMMIT")
        reader.close()
        checkpointer.checkpoint()  # nobody in the way: the log is copied back and emptied
        assert wal.stat().st_size == 0
        # Writers carry on, with their usual patience for the lock (not the checkpoint's).
        store.append_run_event(run.id, "step", {"type": "step", "title": "next"})
        assert [r.data.get("i") for r in store.run_events(run.id)] == [*range(40), None]
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        checkpointer.stop()
        store.close()


def test_secrets_are_masked_in_their_encodings_and_stored_json_stays_valid() -> None:
    import base64
    import json

    from daemon.secrets import Redactor, encoded_forms

    r = Redactor()
    secret = "hunter2-Very-Secret"
    r.register(secret)
    r.register('1", "url')  # a value whose spelling spans JSON syntax in the text below
    for prefix in (b"", b"a", b"ab"):
        for suffix in (b"", b"!", b"!!"):
            blob = base64.b64encode(prefix + secret.encode() + suffix).decode()
            assert r.redact(f"Authorization: Basic {blob}") != f"Authorization: Basic {blob}"
    assert r.redact(secret.encode().hex()) == "***"
    assert r.redact("u=hunter2-Very-Secret%21"[:-3]) == "u=***"
    assert r.redact("pw=hunter2-Very-Secret&x=1") == "pw=***&x=1"
    assert r.redact("ordinary words stay as they are") == "ordinary words stay as they are"
    # Split by line breaks: folded to a width, a wrapped base64 blob, inside JSON text.
    assert r.redact("token: hunter2-Very\n-Secret done") == "token: *** done"
    wrapped = base64.b64encode(b"user:" + secret.encode() + b"@host").decode()
    folded = "\r\n".join(wrapped[i : i + 10] for i in range(0, len(wrapped), 10))
    unfolded = r.redact(folded).replace("\r\n", "")
    assert "***" in unfolded
    assert not any(form in unfolded for form in encoded_forms(secret))
    as_json = json.dumps({"out": "hunter2-Ve\nry-Secret\nnext line"})
    assert json.loads(r.redact_json_text(as_json)) == {"out": "***\nnext line"}
    assert r.redact("two\nlines\nof ordinary text") == "two\nlines\nof ordinary text"
    text = json.dumps({"a": "1", "url": "https://s3/?AKIAABCDEFGHIJKLMNOP=1"})
    assert '1", "url' in text
    stored = json.loads(r.redact_json_text(text))  # valid JSON
    assert stored == {"a": "1", "url": "https://s3/?***=1"}


def test_a_conversation_has_one_unfinished_run_per_automation(db_url: str) -> None:
    store = Store(db_url)
    store.create_all()
    asked = NewRun("answer", "github_mention:o/r#7", {}, key="o/r#7")
    first = store.create_run_once(asked)
    assert first is not None and first.id is not None
    # A second replica that heard another mention of #7 at the same moment starts nothing.
    assert store.create_run_once(asked) is None
    # Another conversation, another automation, or a run no conversation asked for are free.
    assert store.create_run_once(NewRun("answer", "github_mention:o/r#8", {}, key="o/r#8"))
    assert store.create_run_once(NewRun("review", "github_mention:o/r#7", {}, key="o/r#7"))
    assert store.create_run_once(NewRun("answer", "manual", {}, key="o/r#7"))
    assert store.create_run_once(NewRun("answer", "manual", {}, key="o/r#7"))
    store.end_run(first.id, RunStatus.SUCCEEDED.value, "done", utcnow())
    assert store.create_run_once(asked) is not None  # its next run, once the first ended
    store.close()


def test_the_loop_breaker_counts_every_replicas_comments_and_trips_once(db_url: str) -> None:
    first, second = Store(db_url), Store(db_url)  # two replicas on one database
    first.create_all()
    window, now = timedelta(minutes=10), utcnow()
    first.note_comment("o/r#7", now - timedelta(minutes=11), window)  # outside the window
    for n in range(6):
        (first if n % 2 else second).note_comment("o/r#7", now + timedelta(seconds=n), window)
    second.note_comment("o/r#8", now, window)
    later = now + timedelta(seconds=6)
    assert first.comments_since("o/r#7", later - window) == 6
    assert second.comments_since("o/r#7", later - window) == 6
    # Both see the storm; one trips the breaker (and says so), the other finds it holding.
    assert first.hold_conversation("o/r#7", later, later + window) is True
    assert second.hold_conversation("o/r#7", later, later + window) is False
    assert second.held_until("o/r#7") == later + window
    assert first.held_until("o/r#8") is None
    # Once it has passed, it may trip again.
    after = later + window
    assert second.hold_conversation("o/r#7", after, after + window) is True
    first.close()
    second.close()
