"""File saved → automation active (hot reload) p99 ≤ 300 ms.

Measured on a running daemon: from the write of an edited automation file until its new schedule
is live in the scheduler. Baseline, same run, same folder and debounce: watchfiles alone
noticing the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from io import StringIO
from pathlib import Path

from watchfiles import awatch

from daemon.testing import Project, running_daemon, wait_for

from ._util import Result, percentile

EDITS = 60


def text(minute: int) -> str:
    return f'name: bench\ntriggers:\n  - {{type: cron, expr: "{minute} 3 * * *"}}\nskill: noop\n'


async def daemon_side(project: Project) -> list[float]:
    path = project.automations / "bench.yaml"
    path.write_text(text(0))
    out: list[float] = []
    async with running_daemon(project.config(), console=StringIO()) as d:
        await wait_for(lambda: d.scheduler.next_fires().get("bench"))
        for i in range(1, EDITS + 1):
            minute = i % 60
            t0 = time.perf_counter()
            path.write_text(text(minute))
            await wait_for(
                lambda m=minute: (f := d.scheduler.next_fires().get("bench")) and f.minute == m,  # type: ignore[misc]
                timeout=5,
                interval=0.001,
            )
            out.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.05)
    return out


async def baseline_side(folder: Path) -> list[float]:
    path = folder / "bench.yaml"
    out: list[float] = []
    stop = asyncio.Event()
    seen = asyncio.Event()

    async def watcher() -> None:
        async for _ in awatch(folder, debounce=50, step=25, stop_event=stop):
            seen.set()

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.3)
    for i in range(EDITS):
        seen.clear()
        t0 = time.perf_counter()
        path.write_text(text(i % 60))
        await asyncio.wait_for(seen.wait(), 5)
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.05)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return out


async def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "p")
        project.skill("noop", "print()")
        daemon_ms = await daemon_side(project)
        base_dir = Path(tmp) / "base"
        base_dir.mkdir()
        base_ms = await baseline_side(base_dir)
    p99 = percentile(daemon_ms, 99)
    return [
        Result(
            "file saved → automation active, p99",
            p99,
            "ms",
            "watchfiles notice, p99",
            percentile(base_ms, 99),
            "≤ 300 ms",
            p99 <= 300,
        ),
    ]


def main() -> list[Result]:
    return asyncio.run(run())
