"""Several replicas on Temporal, each a `nightshift run` process on one PostgreSQL schema and
one Temporal dev server (the pinned CLI, in memory), with simulated agents:

- throughput of 4 replicas against 1 (sleep-bound runs, `max_runs` equal per replica): ≥ 3.5×;
- a steer sent through replica C → read by the agent on replica B, p99 ≤ 300 ms, against the
  local engine's steer (one replica process, the same control API) in the same run; and the
  same while the run's workflow continues as new every ten messages or so, against none;
- failover: a replica killed → its run continuing on another, ≤ heartbeat timeout + 5 s;
- cost on one replica: 10, 50 and 200 concurrent runs stepping once a second — daemon CPU per
  step within 1.5× from 10 to 200, and steering p99 ≤ 300 ms at 200.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from daemon.http import free_port
from daemon.store import Store
from daemon.testing import Project, wait_for_sync
from daemon.testing.replicas import ReplicaProcess, temporal_dev_server

from ._util import Result, percentile

PG_URL = os.environ.get(
    "NIGHTSHIFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HEARTBEAT_TIMEOUT = 5.0  # the engine's, for the failover figure

SLEEPS = """\
import json, sys, time
sys.stdin.readline()
time.sleep(4)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "slept"}), flush=True)
"""

ECHO = """\
import json, select, sys, time
ctx = json.loads(sys.stdin.readline())
every = float(ctx["inputs"].get("every") or 0)
print(json.dumps({"type": "step", "title": "listening"}), flush=True)
n, next_step = 0, time.time() + every
while True:
    wait = max(next_step - time.time(), 0) if every else None
    if select.select([sys.stdin], [], [], wait)[0]:
        line = sys.stdin.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg.get("type") == "steer":
            print(json.dumps({"type": "message", "text": f"{msg['text']} {time.time()}"}), flush=True)
    elif every:
        n += 1
        print(json.dumps({"type": "step", "title": f"step {n}"}), flush=True)
        next_step += every
"""


@contextlib.contextmanager
def temporal_server() -> Iterator[str]:
    port = free_port()
    server = temporal_dev_server(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


@contextlib.contextmanager
def database() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    Store(url).create_all()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def quiet_replica(project: Project, url: str, name: str, **config: Any) -> ReplicaProcess:
    """A replica process, quiet."""
    return ReplicaProcess(project, url, name, logging={"level": "warning"}, **config)


@contextlib.contextmanager
def replicas(
    project: Project, url: str, names: str | list[str], **config: Any
) -> Iterator[list[ReplicaProcess]]:
    started: list[ReplicaProcess] = []
    try:
        for name in names:
            started.append(quiet_replica(project, url, name, **config))
        yield started
    finally:
        for replica in started:
            replica.stop()


def engine(address: str) -> dict[str, Any]:
    return {
        "type": "temporal",
        "address": address,
        "task_queue": f"bench-{uuid.uuid4().hex[:8]}",
        "heartbeat_timeout": f"{HEARTBEAT_TIMEOUT:.0f}s",
    }


def project_in(root: Path) -> Project:
    project = Project(root)
    project.skill("sleeps", SLEEPS)
    project.automation("sleeps", skill="sleeps", policies={"concurrency": {"max_instances": 500}})
    project.skill("echo", ECHO, inputs={"every": {"type": "string", "default": "0"}})
    project.automation(
        "echo", skill="echo", policies={"concurrency": {"max_instances": 500}, "timeout": "1h"}
    )
    return project


def throughput(project: Project, address: str, count: int, per_replica: int) -> tuple[float, float]:
    """Runs a second with 1 replica, and with 4, each taking `per_replica` at once."""
    figures = []
    for names in ("t", "wxyz"):
        with (
            database() as url,
            replicas(
                project, url, names, engine=engine(address), concurrency={"max_runs": per_replica}
            ) as group,
        ):
            store = Store(url)
            t0 = time.monotonic()
            for n in range(count):
                with group[n % len(group)].client() as client:
                    client.trigger("sleeps", {})
            wait_for_sync(functools.partial(_count_is, store, "succeeded", count), 300)
            figures.append(count / (time.monotonic() - t0))
            store.close()
    return figures[0], figures[1]


def steer_latencies(
    store: Store, via: ReplicaProcess, run_id: int, n: int, tag: str, pace: float = 0.0
) -> list[float]:
    """Steer `run_id` `n` times through `via`, `pace` seconds apart at least; ms from sending
    to the agent reading each."""
    out = []
    for i in range(n):
        time.sleep(pace)
        word = f"{tag}-{i}"
        sent = time.time()
        with via.client() as client:
            client.steer(run_id, word)

        def read(word: str = word) -> float | None:
            for e in store.run_events(run_id, type="message"):
                said = str(e.data.get("text", ""))
                if said.startswith(word + " "):
                    return float(said.split()[-1])
            return None

        try:
            out.append((wait_for_sync(read, 30, 0.005) - sent) * 1000)
        except TimeoutError:  # lost: it counts against the p99
            print(f"  steer {word} to run {run_id} not read within 30 s", file=sys.stderr)
            out.append(float("inf"))
    return out


def echo_run(store: Store, via: ReplicaProcess, every: str = "0") -> int:
    with via.client() as client:
        run_id = client.trigger("echo", {"every": every})
    wait_for_sync(lambda: any(e.type == "step" for e in store.run_events(run_id)), 60)
    return run_id


def cross_replica_steer(
    project: Project, address: str, n: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Steering sent to replica C for a run on B; the local engine's steer as the baseline.
    Then steers paced 200 ms apart (a quick typist: the server starts a workflow's next run
    no sooner than a second after the last, which only a burst of a whole history's worth of
    messages within a second meets) to a run whose workflow never continues as new, and to
    one whose workflow does so every ten messages or so."""
    with database() as url, replicas(project, url, "l") as (local,):
        store = Store(url)
        run_id = echo_run(store, local)
        baseline = steer_latencies(store, local, run_id, n, "local")
        store.close()
    figures = []
    for history_events, pace in ((1000, 0.0), (1000, 0.2), (100, 0.2)):
        config = {**engine(address), "history_events": history_events}
        with database() as url, replicas(project, url, "bc", engine=config) as (b, c):
            store = Store(url)
            run_id = echo_run(store, b)
            holder = store.get_run(run_id).owner
            via = c if holder == b.id else b  # the replica that does not hold it
            figures.append(steer_latencies(store, via, run_id, n, "across", pace))
            store.close()
    return baseline, figures[0], figures[1], figures[2]


def failover(project: Project, address: str, times: int, how: signal.Signals) -> list[float]:
    """Seconds from `kill -9` (SIGKILL) — or a freeze (SIGSTOP: alive but silent, as a
    replica on another host that hangs or is cut off looks) — of the replica executing a run
    to the run going on elsewhere. On one host a killed replica's process is seen gone at the
    next beat; a frozen one only through Temporal's heartbeat timeout."""
    out = []
    # The database takes a replica for gone when Temporal does (see docs/deploy.md).
    config = {"engine": engine(address), "replicas": {"heartbeat": "1s", "gone_after": "5s"}}
    with database() as url:
        store = Store(url)
        spare = quiet_replica(project, url, "spare", **config)
        try:
            for attempt in range(times):
                victim = quiet_replica(project, url, f"victim{attempt}", **config)
                with victim.client() as client:
                    run_id = client.trigger("echo", {"every": "0"})
                wait_for_sync(lambda run_id=run_id: any(  # type: ignore[misc]
                    e.type == "step" for e in store.run_events(run_id)), 60)  # fmt: skip
                if store.get_run(run_id).owner != victim.id:  # the spare took it: kill it there
                    spare, victim = victim, spare
                killed = time.monotonic()
                os.killpg(victim.proc.pid, how)

                def going_on(run_id: int = run_id) -> bool:
                    newest = store.current_attempt(run_id)  # a retry, or a retry's retry
                    return newest != run_id and any(
                        e.type == "step" for e in store.run_events(newest)
                    )

                wait_for_sync(going_on, 120, 0.05)
                out.append(time.monotonic() - killed)
                os.killpg(victim.proc.pid, signal.SIGKILL)
                victim.proc.wait(10)
                for run in store.list_runs(statuses=["running"], limit=100):
                    with spare.client() as client:
                        client.cancel(run.id or 0)
        finally:
            spare.stop()
            store.close()
    return out


def cost_growth(project: Project, address: str, sizes: tuple[int, ...]) -> dict[int, Any]:
    """Per size: daemon CPU µs per stored step and steering p99 (ms), runs stepping 1/s."""
    out: dict[int, Any] = {}
    for size in sizes:
        with (
            database() as url,
            replicas(
                project, url, ["one"], engine=engine(address), concurrency={"max_runs": size}
            ) as (one,),
        ):
            store = Store(url)
            ids = []
            for _ in range(size):
                with one.client() as client:
                    ids.append(client.trigger("echo", {"every": "1"}))
            wait_for_sync(functools.partial(_count_is, store, "running", size), 300, 0.2)
            time.sleep(5)  # all of them stepping
            steps0 = _steps(store)
            cpu0, t0 = one.cpu_seconds(), time.monotonic()
            time.sleep(20)
            cpu1, t1 = one.cpu_seconds(), time.monotonic()
            steps1 = _steps(store)
            steer = []
            for i in range(30):
                steer += steer_latencies(store, one, random.choice(ids), 1, f"load{size}-{i}")
            out[size] = {
                "cpu_us_per_step": (cpu1 - cpu0) / max(steps1 - steps0, 1) * 1e6,
                "steps_per_s": (steps1 - steps0) / (t1 - t0),
                "steer_p99": percentile(steer, 99),
            }
            store.close()
    return out


def _count_is(store: Store, status: str, count: int) -> bool:
    return len(store.list_runs(statuses=[status], limit=1000)) == count


def _steps(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM run_events WHERE type = 'step'")).one()[0]
        )


def main() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp, temporal_server() as address:
        project = project_in(Path(tmp))
        one, four = throughput(project, address, count=80, per_replica=5)
        print(f"  throughput: 1 replica {one:.2f} runs/s, 4: {four:.2f}", file=sys.stderr)
        baseline, across, paced, moving = cross_replica_steer(project, address, 100)
        print(f"  steer p99: local {percentile(baseline, 99):.1f} ms, across "
              f"{percentile(across, 99):.1f} ms, paced {percentile(paced, 99):.1f} ms, "
              f"moving {percentile(moving, 99):.1f} ms", file=sys.stderr)  # fmt: skip
        killed = failover(project, address, 3, signal.SIGKILL)
        frozen = failover(project, address, 3, signal.SIGSTOP)
        print(f"  failover: killed {killed}, frozen {frozen}", file=sys.stderr)
        cost = cost_growth(project, address, (10, 50, 200))
        print(f"  cost: {cost}", file=sys.stderr)
    worst = max(frozen)
    small, large = cost[10], cost[200]
    return [
        Result(
            "4 replicas vs 1 on Temporal, sleep-bound runs, 5 a replica at once",
            four,
            "runs/s",
            "1 replica",
            one,
            "≥ 3.5× one",
            four / one >= 3.5,
        ),
        Result(
            "steer sent to replica C → at the agent on replica B, p99",
            percentile(across, 99),
            "ms",
            "local engine's steer, p99",
            percentile(baseline, 99),
            "≤ 300 ms",
            percentile(across, 99) <= 300,
        ),
        Result(
            "the same, 200 ms apart, its workflow continuing as new every ~10 messages, p99",
            percentile(moving, 99),
            "ms",
            "200 ms apart, never continuing as new",
            percentile(paced, 99),
            "≤ 300 ms",
            percentile(moving, 99) <= 300,
        ),
        Result(
            "replica killed (kill -9) → its run going on elsewhere, worst of 3",
            max(killed),
            "s",
            "engine.heartbeat_timeout",
            HEARTBEAT_TIMEOUT,
            f"≤ {HEARTBEAT_TIMEOUT + 5:.0f} s",
            max(killed) <= HEARTBEAT_TIMEOUT + 5,
        ),
        Result(
            "replica frozen (SIGSTOP) → its run going on elsewhere, worst of 3",
            worst,
            "s",
            "engine.heartbeat_timeout",
            HEARTBEAT_TIMEOUT,
            "—",
            True,
        ),
        Result(
            "daemon CPU per step, one replica, 200 runs stepping 1/s",
            large["cpu_us_per_step"],
            "µs",
            "10 runs stepping 1/s",
            small["cpu_us_per_step"],
            "≤ 1.5× ten",
            large["cpu_us_per_step"] <= 1.5 * small["cpu_us_per_step"],
        ),
        Result(
            "daemon CPU per step, one replica, 50 runs stepping 1/s",
            cost[50]["cpu_us_per_step"],
            "µs",
            "10 runs stepping 1/s",
            small["cpu_us_per_step"],
            "—",
            True,
        ),
        Result(
            "steer at the agent, p99, 200 runs stepping 1/s",
            large["steer_p99"],
            "ms",
            "10 runs stepping 1/s",
            small["steer_p99"],
            "≤ 300 ms",
            large["steer_p99"] <= 300,
        ),
    ]
