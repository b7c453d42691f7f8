"""Three replica processes on one PostgreSQL database and one Temporal dev server: runs
spread over them, steering and decisions reach a run from any replica, a replica killed
mid-run loses no run and runs none twice, a partitioned replica posts nothing for a run it
lost, and a schedule fires once per slot."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.control import ControlClient
from daemon.engines import TemporalEngine
from daemon.errors import NightshiftError
from daemon.http import free_port
from daemon.runs import RunStatus
from daemon.store import RunRow, Store
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.slack import SlackDouble

from .conftest import start_temporal
from .test_replicas import EFFECTS, Cuttable, Replica

GATED = """\
import json, pathlib, select, sys
ctx = json.loads(sys.stdin.readline())
gate = pathlib.Path(ctx["inputs"]["gate"])
print(json.dumps({"type": "step", "title": "attempt %d" % ctx["run"]["attempt"]}), flush=True)
while not gate.exists():
    if select.select([sys.stdin], [], [], 0.1)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg.get("type") == "steer":
            print(json.dumps({"type": "message", "text": "steered: " + msg["text"]}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "done"}), flush=True)
"""

ASKS = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push"}), flush=True)
decision = json.loads(sys.stdin.readline())
said = "approved" if decision["approved"] else "denied"
print(json.dumps({"type": "finished", "status": "succeeded", "summary": said}), flush=True)
"""

TICKS = """\
import json, sys, time
ctx = json.loads(sys.stdin.readline())
attempt = ctx["run"]["attempt"]
for n in range(100000 if attempt == 1 else 1):
    print(json.dumps({"type": "step", "title": f"tick {n} of attempt {attempt}"}), flush=True)
    time.sleep(0.2)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": f"attempt {attempt}"}), flush=True)
"""

QUICK = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "tick"}), flush=True)
"""


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackDouble]:
    monkeypatch.setenv("NIGHTSHIFT_TEST_SLACK_TOKEN", "xoxb-test-token")
    async with SlackDouble() as double:
        yield double


@pytest.fixture
def store(pg_schema_url: str) -> Any:
    made = Store(pg_schema_url)
    made.create_all()
    yield made
    made.close()


def settings(temporal: str, slack: SlackDouble, **extra: Any) -> dict[str, Any]:
    """What every replica of one install shares: the engine, Slack, quick heartbeats."""
    return {
        "engine": {
            "type": "temporal",
            "address": temporal,
            "task_queue": f"replicas-{uuid.uuid4().hex[:8]}",
            "heartbeat_timeout": "3s",
        },
        "slack": {
            "bot_token": "${NIGHTSHIFT_TEST_SLACK_TOKEN}",
            "base_url": slack.base_url,
            "min_interval": "10ms",
        },
        "replicas": {"heartbeat": "1s", "gone_after": "5s"},
        **extra,
    }


async def replicas(project: Project, url: str, names: str, **config: Any) -> list[Replica]:
    """Replica processes, started side by side (the event loop serves the doubles meanwhile)."""
    started = [asyncio.to_thread(Replica, project, url, name, **config) for name in names]
    return list(await asyncio.gather(*started))


def control(replica: Replica) -> ControlClient:
    return ControlClient(replica.socket)


def stop_all(*group: Replica) -> None:
    for replica in group:
        if replica.proc.poll() is None:
            replica.stop()


def stepped(store: Store, run_id: int) -> RunRow | None:
    """The run once its script reported a step (its owner known)."""
    if any(e.type == "step" for e in store.run_events(run_id)):
        return store.get_run(run_id)
    return None


async def test_three_replicas_share_runs_and_lose_none_when_one_is_killed(
    project: Project, temporal: str, pg_schema_url: str, store: Store, slack: SlackDouble
) -> None:
    gate = project.root / "gate"
    project.skill("gated", GATED, inputs={"gate": {"type": "string"}})
    report = {"channel": "#ops"}
    project.automation(
        "gated",
        skill="gated",
        inputs={"gate": str(gate)},
        report=report,
        policies={"concurrency": {"max_instances": 40}},
    )
    project.skill("asks", ASKS)
    project.automation("asks", skill="asks", report=report)
    project.skill("quick", QUICK)
    project.automation("ticker", skill="quick", triggers=[{"type": "interval", "every": "1s"}])
    config = settings(temporal, slack, concurrency={"max_runs": 10})
    a, b, c = await replicas(project, pg_schema_url, "abc", **config)
    by_id = {r.id: r for r in (a, b, c)}
    try:
        # An approval clicked through one replica decides a run waiting on another.
        with control(a) as client:
            asks = client.trigger("asks", {})
        waiting = await wait_for(lambda: store.get_run(asks).status == "waiting" or None, 30)
        assert waiting
        holder = store.get_run(asks).owner
        elsewhere = next(r for r in (a, b, c) if r.id != holder)
        with control(elsewhere) as client:
            assert client.decide(asks, True, None, None) == "push-1"
        await wait_for(lambda: store.get_run(asks).status == "succeeded", 30)
        assert store.get_run(asks).summary == "approved"

        # Thirty runs, ten a replica (each takes at most ten at once).
        ids = []
        for n in range(30):
            with control((a, b, c)[n % 3]) as client:
                ids.append(client.trigger("gated", {}))
        runs = await wait_for(lambda: [stepped(store, i) for i in ids] if all(
            stepped(store, i) for i in ids) else None, 60)  # fmt: skip
        owners = Counter(r.owner for r in runs if r is not None)
        assert sorted(owners.values()) == [10, 10, 10] and set(owners) == set(by_id)

        # A steer sent to one replica reaches a run executing on another.
        on_b = next(r for r in runs if r is not None and r.owner == b.id)
        assert on_b.id is not None
        with control(c) as client:
            client.steer(on_b.id, "mind the tests")
        await wait_for(
            lambda: any(
                e.data.get("text") == "steered: mind the tests" for e in store.run_events(on_b.id)
            ),
            30,
        )

        # kill -9 a replica mid-run: its runs are taken over and run again elsewhere, once.
        os.killpg(a.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait, 10)
        on_a = [r.id for r in runs if r is not None and r.owner == a.id]

        def retried() -> list[RunRow] | None:
            again = [r for r in store.list_runs(limit=500) if r.retry_of in on_a]
            return again if len(again) == len(on_a) else None

        await wait_for(retried, 60)
        gate.touch()

        def all_done() -> list[RunRow] | None:
            every = store.list_runs(automation="gated", limit=500)
            return every if all(r.finished_at is not None for r in every) else None

        done = await wait_for(all_done, 90)
        assert len(done) == 40  # thirty, and ten retries
        for run in done:
            assert run.id is not None
            if run.id in on_a:
                assert (run.status, run.owner) == ("interrupted", run.owner)
                assert run.owner in (b.id, c.id)  # recorded by the replica that took it over
            else:
                assert (run.status, run.summary) == ("succeeded", "done")
                assert run.owner in (b.id, c.id) or run.retry_of is None
            started = [e for e in store.run_events(run.id) if e.type == "started"]
            assert len(started) <= 1  # no attempt ran twice
        assert Counter(r.retry_of for r in done if r.retry_of is not None) == dict.fromkeys(on_a, 1)
        assert {r.owner for r in done if r.retry_of is not None} <= {b.id, c.id}

        # Every Slack message went out once, by whichever replica held its run.
        await wait_for(lambda: not store.outbox(status="pending", limit=1000), 60)
        assert [
            (o.id, o.parent_id, o.error, o.payload)
            for o in store.outbox(status="failed", limit=1000)
        ] == []
        for parent in slack.parents("C0OPS"):
            texts = [m.text for m in slack.thread(parent)]
            # A reply the killed replica had posted but not yet recorded as sent is found in
            # its thread by the replica that took its run over, not posted again; one it had
            # not posted goes before what the new holder says of the run.
            assert sorted(set(texts)) == sorted(texts), texts
            said = [n for n, t in enumerate(texts) if "stopped beating" in t or "went silent" in t]
            if said and "→ *attempt 1*" in texts:
                assert texts.index("→ *attempt 1*") < said[0], texts

        # The schedule fired once per slot, whichever replica claimed each.
        ticks = store.list_runs(automation="ticker", limit=500)
        assert ticks
        slots = [
            (found[0].payload or {}).get("scheduled_for")
            for t in ticks
            if t.event_id is not None and (found := store.get_event(t.event_id)) is not None
        ]
        assert len(slots) == len(set(slots)) == len(ticks)
    finally:
        stop_all(a, b, c)


async def test_a_partitioned_replica_posts_nothing_for_a_run_it_lost(
    project: Project, temporal: str, pg_schema_url: str, store: Store, slack: SlackDouble
) -> None:
    project.skill("ticks", TICKS)
    project.automation("ticks", skill="ticks", report={"channel": "#ops"})
    a, b = await replicas(project, pg_schema_url, "ab", **settings(temporal, slack))
    try:
        with control(a) as client:
            run_id = client.trigger("ticks", {})
        await wait_for(lambda: stepped(store, run_id), 30)
        taken = store.get_run(run_id)
        partitioned = a if taken.owner == a.id else b
        other = b if partitioned is a else a
        os.killpg(partitioned.proc.pid, signal.SIGSTOP)  # silent: no beat, no heartbeat
        try:
            lost = await wait_for(
                lambda: ((r := store.get_run(run_id)).finished_at is not None and r) or None, 60
            )
            assert (lost.status, lost.owner) == ("interrupted", other.id)
            ticked = [e.seq for e in store.run_events(run_id) if e.type == "step"]
        finally:
            os.killpg(partitioned.proc.pid, signal.SIGCONT)
        back = time.time()

        def retry_done() -> RunRow | None:
            again = [r for r in store.list_runs() if r.retry_of == run_id]
            return again[0] if again and again[0].finished_at else None

        again = await wait_for(retry_done, 60)
        assert (again.status, again.summary) == ("succeeded", "attempt 2")  # on either
        await asyncio.sleep(3)  # the partitioned replica is back and its script still ticks
        steps = [e.seq for e in store.run_events(run_id) if e.type == "step"]
        assert steps == ticked  # nothing more stored from there
        late = [m.text for m in slack.messages if m.received_at > back and "of attempt 1" in m.text]
        assert late == []  # and nothing posted
        log = await asyncio.to_thread(partitioned.log.read_text)
        assert "the run belongs to another replica now" in log or "taken over" in log
    finally:
        stop_all(a, b)
    assert RunStatus(store.get_run(run_id).status) == RunStatus.INTERRUPTED


async def test_a_rolling_restart_loses_no_run(
    project: Project, temporal: str, pg_schema_url: str, store: Store, slack: SlackDouble
) -> None:
    gate = project.root / "gate"
    project.skill("gated", GATED, inputs={"gate": {"type": "string"}})
    project.automation(
        "gated",
        skill="gated",
        inputs={"gate": str(gate)},
        policies={"concurrency": {"max_instances": 10}},
    )
    config = settings(temporal, slack, concurrency={"max_runs": 3})
    a, b = await replicas(project, pg_schema_url, "ab", **config)
    group = [a, b]
    try:
        ids = []
        for n in range(6):
            with control((a, b)[n % 2]) as client:
                ids.append(client.trigger("gated", {}))
        await wait_for(lambda: all(stepped(store, i) for i in ids), 60)
        # One replica at a time: SIGTERM, wait for it to go, start it again.
        for name, replica in (("a2", a), ("b2", b)):
            await asyncio.to_thread(replica.stop)
            (fresh,) = await replicas(project, pg_schema_url, [name], **config)
            group.append(fresh)
        gate.touch()

        def settled() -> list[RunRow] | None:
            every = store.list_runs(automation="gated", limit=100)
            return every if all(r.finished_at for r in every) else None

        done = await wait_for(settled, 90)
        by_id = {r.id: r for r in done}
        for run_id in ids:  # each chain of attempts ends done, none left behind
            tip = run_id
            while nxt := [r for r in done if r.retry_of == tip]:
                assert len(nxt) == 1  # handed over once per interruption
                tip = nxt[0].id or 0
            assert (by_id[tip].status, by_id[tip].summary) == ("succeeded", "done")
        assert all(r.status in ("succeeded", "interrupted") for r in done)
        assert any(r.status == "interrupted" for r in done)  # the restarts did hand runs over
    finally:
        stop_all(*group)


async def test_the_temporal_server_restarted_mid_run_loses_nothing(
    project: Project, tmp_path: Path
) -> None:
    port = free_port()
    server = await asyncio.to_thread(start_temporal, tmp_path, port)
    gate = project.root / "gate"
    project.skill("gated", GATED, inputs={"gate": {"type": "string"}})
    project.automation("gated", skill="gated", inputs={"gate": str(gate)})
    engine = {"type": "temporal", "address": f"127.0.0.1:{port}", "task_queue": "restarted"}
    try:
        async with running_daemon(project.config(engine=engine)) as d:
            run = await d.dispatcher.manual("gated", {}, "test")
            assert run.id is not None
            run_id = run.id
            await wait_for(lambda: stepped(d.store, run_id), 30)
            server.terminate()
            await asyncio.to_thread(server.wait, 30)
            server = await asyncio.to_thread(start_temporal, tmp_path, port)
            # Steering reaches the run through the restarted server; the run ends there.
            sent: list[bool] = []
            await wait_for(lambda: _steer_once(d, run_id, sent), 60, interval=0.5)
            gate.touch()
            await wait_for(lambda: d.store.get_run(run_id).status == "succeeded", 60)
            assert isinstance(d.executor, TemporalEngine)
            assert await d.executor.handle(run_id).result() == "succeeded"
            later = await d.dispatcher.manual("gated", {}, "test")  # and the next run starts
            assert later.id is not None
            await wait_for(lambda: d.store.get_run(later.id or 0).status == "succeeded", 60)
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)


async def _steer_once(d: Any, run_id: int, sent: list[bool]) -> bool:
    """Steer `run_id` once the restarted server takes it; whether the run has it."""
    if not sent:
        try:
            await d.executor.steer(run_id, "still there?", "cli:ann")
            sent.append(True)
        except NightshiftError:  # the server is not back yet
            return False
    return any(e.data.get("text") == "steered: still there?" for e in d.store.run_events(run_id))


async def test_a_replica_cut_off_from_temporal_lets_its_run_go_before_another_takes_it(
    project: Project, temporal: str, pg_schema_url: str, store: Store, slack: SlackDouble
) -> None:
    out = project.root / "effects.log"
    project.skill("effects", EFFECTS, inputs={"out": {"type": "string"}})
    project.automation("effects", skill="effects", inputs={"out": str(out)})
    host, port = temporal.rsplit(":", 1)
    proxy = Cuttable((host, int(port)))
    await proxy.start()
    config = settings(temporal, slack)
    config["engine"]["heartbeat_timeout"] = "3s"
    through = {**config, "engine": {**config["engine"], "address": f"127.0.0.1:{proxy.port}"}}
    (a,) = await replicas(project, pg_schema_url, "a", **through)
    group = [a]
    try:
        run_id = await asyncio.to_thread(a.trigger, "effects")
        await wait_for(lambda: stepped(store, run_id), 30)
        (b,) = await replicas(project, pg_schema_url, "b", **config)
        group.append(b)
        await proxy.cut()  # a reaches the database, not Temporal: its run times out there
        # a stops its agent and lets the run go; only then does b take it (a still beats, so
        # b waits for that rather than run it twice).
        lost = await wait_for(lambda: (r := store.get_run(run_id)).finished_at and r, 60)
        assert (lost.status, lost.owner) == (RunStatus.INTERRUPTED, b.id)
        said = [e.data.get("text") for e in store.run_events(run_id) if e.type == "message"]
        assert f"its replica lost Temporal and let it go; recovered by {b.id}" in said
        await proxy.start()

        def second() -> list[float]:
            lines = [ln.split() for ln in out.read_text().splitlines()]
            return [float(t) for n, t in lines if n == "2"]

        seconds = await wait_for(second, 60)
        firsts = [
            float(t) for n, t in (ln.split() for ln in out.read_text().splitlines()) if n == "1"
        ]
        assert max(firsts) < min(seconds)  # the two attempts never overlapped
    finally:
        stop_all(*group)
        with contextlib.suppress(Exception):
            await proxy.cut()
