"""Daemons sharing one PostgreSQL database, each its own process: every run records the
replica that took it, and a daemon starting (or restarting) leaves a live replica's runs
alone — only a gone replica's runs are recovered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import update

from daemon.http import free_port
from daemon.runs import RunStatus
from daemon.store import Decision, NewRun, ReplicaRow, RunRow, Store, utcnow
from daemon.testing import Project, running_daemon, wait_for, wait_for_sync
from daemon.testing.replicas import ReplicaProcess

WAITS = """\
import json, sys
sys.stdin.readline()
print(json.dumps({"type": "step", "title": "working"}), flush=True)
sys.stdin.readline()
"""


class Replica(ReplicaProcess):
    """A replica process whose automation here is `long`."""

    def trigger(self, automation: str = "long", inputs: dict[str, Any] | None = None) -> int:
        return super().trigger(automation, inputs)

    def cancel(self, run_id: int) -> None:
        with self.client() as client:
            client.cancel(run_id, "test")


@pytest.fixture
def store(pg_schema_url: str) -> Iterator[Store]:
    made = Store(pg_schema_url)
    made.create_all()
    yield made
    made.close()


def run_of(store: Store, run_id: int) -> RunRow:
    return store.get_run(run_id)


def working(store: Store, run_id: int) -> RunRow:
    """The run, once its script reported its first step."""
    wait_for_sync(lambda: any(e.type == "step" for e in store.run_events(run_id)), 20)
    return run_of(store, run_id)


def test_replicas_restarting_leave_each_others_runs_alone(
    project: Project, store: Store, pg_schema_url: str
) -> None:
    project.skill("long", WAITS)
    project.automation("long", skill="long", policies={"retries": {"interrupted": 0}})
    a = Replica(project, pg_schema_url, "a")
    try:
        ours = a.trigger()
        assert working(store, ours).owner == a.id
        for name in ("b", "b-again"):  # another replica starts, works and stops: twice
            b = Replica(project, pg_schema_url, name)
            try:
                theirs = b.trigger()
                assert working(store, theirs).owner == b.id
                assert run_of(store, ours).status == RunStatus.RUNNING
            finally:
                b.stop()
            assert run_of(store, theirs).status == RunStatus.INTERRUPTED  # its own, at its stop
            assert run_of(store, ours).status == RunStatus.RUNNING  # a's, untouched
        assert not any(
            e.type == "message" and "daemon stopped" in e.data.get("text", "")
            for e in store.run_events(ours)
        )
        a.cancel(ours)
        wait_for_sync(lambda: run_of(store, ours).status == RunStatus.CANCELLED, 20)
    finally:
        a.stop()


def test_a_starting_replica_recovers_only_the_runs_of_replicas_that_are_gone(
    project: Project, store: Store, pg_schema_url: str
) -> None:
    project.skill("long", WAITS)
    project.automation("long", skill="long", policies={"retries": {"interrupted": 0}})
    left: dict[str, int] = {}
    for owner in ("gone-replica", "live-replica"):
        made = store.dispatch(
            source="manual",
            type="trigger",
            payload={},
            decisions=[Decision("long", "matched", run=NewRun("long", "manual", {}))],
        )
        assert made is not None and made.runs[0].id is not None
        left[owner] = made.runs[0].id
        store.start_run(left[owner], utcnow(), owner)
        store.register_replica(owner, "elsewhere", 1)
    replicas = ReplicaRow.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # the gone one's last beat was an hour ago
        conn.execute(
            update(replicas)
            .where(replicas.c.id == "gone-replica")
            .values(heartbeat_at=utcnow() - timedelta(hours=1))
        )
    port = free_port()
    c = Replica(project, pg_schema_url, "c", http={"port": port})
    try:
        wait_for_sync(lambda: run_of(store, left["gone-replica"]).finished_at is not None, 20)
        ended = run_of(store, left["gone-replica"])
        assert (ended.status, ended.summary) == (
            RunStatus.INTERRUPTED,
            "the daemon stopped during the run",
        )
        assert run_of(store, left["live-replica"]).status == RunStatus.RUNNING
        live = {r.id for r in store.live_replicas(timedelta(minutes=5))}
        assert {c.id, "live-replica"} <= live and "gone-replica" not in live
        shown = subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(c.config), "status", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        status = {r["replica"]: r for r in json.loads(shown.stdout)["replicas"]}
        assert status["live-replica"]["runs"] == [left["live-replica"]]
        assert status["gone-replica"]["gone"] and status["gone-replica"]["runs"] == []
        assert not status[c.id]["gone"]
        # The live one stops beating while c runs: c recovers its run at its next beat.
        with store.engine.begin() as conn:
            conn.execute(
                update(replicas)
                .where(replicas.c.id == "live-replica")
                .values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
        wait_for_sync(lambda: run_of(store, left["live-replica"]).finished_at is not None, 20)
        taken = run_of(store, left["live-replica"])
        assert (taken.status, taken.summary, taken.owner) == (
            RunStatus.INTERRUPTED,
            "its daemon stopped beating",
            c.id,
        )
        # Each replica's metrics say which replica it is and what it took over.
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert f'nightshift_replica_info{{engine="local",replica="{c.id}"}} 1.0' in scraped
        assert "nightshift_runs_taken_over 1.0" in scraped
        assert "nightshift_runs_lost 0.0" in scraped
    finally:
        c.stop()


def test_a_replica_is_forgotten_when_it_stops_cleanly(project: Project, tmp_path: Path) -> None:
    async def go() -> str:
        async with running_daemon(project.config()) as d:
            live = await d.store.call(d.store.live_replicas, timedelta(minutes=1))
            assert [r.id for r in live] == [d.replica_id]
            return d.replica_id

    me = asyncio.run(go())
    store = Store(f"sqlite:///{project.root / '.nightshift' / 'nightshift.db'}")
    try:
        assert me and store.live_replicas(timedelta(days=1)) == []
    finally:
        store.close()


STEPS = """\
import json, sys, time
sys.stdin.readline()
for n in range(1000):
    print(json.dumps({"type": "step", "title": f"step {n}"}), flush=True)
    time.sleep(0.05)
"""


async def test_a_run_taken_over_by_another_replica_is_dropped_here_without_a_word(
    project: Project,
) -> None:
    project.skill("steps", STEPS)
    project.automation("steps", skill="steps")
    config = project.config(replicas={"heartbeat": "1s", "gone_after": "30s"})
    async with running_daemon(config) as d:
        run = await d.dispatcher.manual("steps", {}, "test")
        assert run.id is not None
        await wait_for_async_steps(d, run.id)
        # As when this replica was silent (partitioned) and another, alive, claimed the run.
        await d.store.call(d.store.register_replica, "other-replica", "elsewhere", 1)
        assert await d.store.call(d.store.claim_run, run.id, d.replica_id, "other-replica")
        await wait_for(lambda: run.id not in d.executor.active_ids, 10)
        await d.executor.settle(5)
        logged = await d.store.call(d.store.run_events, run.id)
        await asyncio.sleep(0.5)
        after = await d.store.call(d.store.get_run, run.id)
        # Silent from then on: nothing more stored, and no end of its own.
        assert len(await d.store.call(d.store.run_events, run.id)) == len(logged)
        assert not any(e.type in ("finished", "status") for e in logged)
        assert (after.status, after.owner, after.finished_at) == ("running", "other-replica", None)


async def wait_for_async_steps(d: Any, run_id: int) -> None:
    async def stepped() -> bool:
        rows = await d.store.call(d.store.run_events, run_id)
        return sum(r.type == "step" for r in rows) >= 3

    await wait_for(stepped, 10)


class Cuttable:
    """A TCP proxy to PostgreSQL on 127.0.0.1 that can be cut (every connection closed, no
    new one taken) and restored on the same port: one replica's network to the database."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._open |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


EFFECTS = """\
import json, pathlib, sys, time
ctx = json.loads(sys.stdin.readline())
out = pathlib.Path(ctx["inputs"]["out"])
attempt = ctx["run"]["attempt"]
print(json.dumps({"type": "step", "title": "working"}), flush=True)
for n in range(1 if attempt > 1 else 100000):
    with out.open("a") as f:  # an effect of its own, as a push would be
        f.write(f"{attempt} {time.time()}\\n")
    time.sleep(0.1)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": f"attempt {attempt}"}), flush=True)
"""


async def test_a_replica_cut_off_from_the_database_freezes_its_agents_before_a_takeover(
    project: Project, store: Store, pg_schema_url: str
) -> None:
    out = project.root / "effects.log"
    project.skill("effects", EFFECTS, inputs={"out": {"type": "string"}})
    project.automation("effects", skill="effects", inputs={"out": str(out)})
    parts = urlsplit(pg_schema_url)
    proxy = Cuttable((parts.hostname or "127.0.0.1", parts.port or 5432))
    await proxy.start()
    through = pg_schema_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    beats = {"replicas": {"heartbeat": "1s", "gone_after": "10s"}}
    a = await asyncio.to_thread(Replica, project, through, "a", **beats)
    b = await asyncio.to_thread(Replica, project, pg_schema_url, "b", **beats)
    try:
        run_id = await asyncio.to_thread(a.trigger, "effects")
        await wait_for(lambda: out.exists() and out.read_text().count("\n") > 3, 20)
        await proxy.cut()  # a cannot reach the database; b can, and takes a's run over
        lost = await wait_for(lambda: (r := store.get_run(run_id)).finished_at and r, 30)
        assert (lost.status, lost.owner) == (RunStatus.INTERRUPTED, b.id)
        taken_at = lost.finished_at.timestamp()
        await wait_for(lambda: any(r.retry_of == run_id for r in store.list_runs()), 20)
        await proxy.start()  # a is back: it learns the run is b's and stops its agent
        await wait_for(lambda: "was taken over" in a.log.read_text(), 20)
        await asyncio.sleep(1)
        firsts = [
            float(t) for n, t in (ln.split() for ln in out.read_text().splitlines()) if n == "1"
        ]
        assert firsts and max(firsts) < taken_at  # nothing of the lost attempt once b took it
        assert "2" in {ln.split()[0] for ln in out.read_text().splitlines()}  # b's attempt ran
        assert "agents frozen" in a.log.read_text()
    finally:
        await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
        with contextlib.suppress(Exception):
            await proxy.cut()
