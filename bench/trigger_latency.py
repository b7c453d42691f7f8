"""`trigger` → run started p99 ≤ 20 ms.

From the CLI client's POST to the control socket until the executor has the run executing
(its `started` event stored). Baseline, same run and socket: a `GET /v1/status` round trip.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from io import StringIO
from pathlib import Path

from daemon.control import ControlClient
from daemon.testing import Project, running_daemon

from ._util import Result, percentile

N = 300


async def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "p")
        project.skill("quick", "import sys\nsys.stdin.readline()\n")
        project.automation("quick", skill="quick", policies={"concurrency": {"max_instances": 50}})
        async with running_daemon(
            project.config(concurrency={"max_runs": 50}), console=StringIO()
        ) as d:
            started: dict[int, float] = {}
            d.executor.on_started(lambda run_id: started.__setitem__(run_id, time.perf_counter()))
            client = ControlClient(d.config.socket_path)

            def trigger_once() -> tuple[int, float]:
                t0 = time.perf_counter()
                return client.trigger("quick", {}), t0

            def status_once() -> float:
                t0 = time.perf_counter()
                client.status()
                return (time.perf_counter() - t0) * 1000

            base = [await asyncio.to_thread(status_once) for _ in range(N)]
            latencies = []
            for _ in range(N):
                run_id, t0 = await asyncio.to_thread(trigger_once)
                while run_id not in started:
                    await asyncio.sleep(0.0005)
                latencies.append((started[run_id] - t0) * 1000)
                while d.executor.active_ids:  # one at a time: measure latency, not a queue
                    await asyncio.sleep(0.001)
            client.close()
    p99 = percentile(latencies, 99)
    return [
        Result(
            "trigger → run started, p99",
            p99,
            "ms",
            "control API round trip, p99",
            percentile(base, 99),
            "≤ 20 ms",
            p99 <= 20,
        ),
    ]


def main() -> list[Result]:
    return asyncio.run(run())
