"""The command center's figures, against a real `nightshift run` process and Debian's chromium.

- Event stored → visible in the browser's DOM, p99 ≤ 250 ms, with 50 runs streaming at once:
  run pages record when each log line appears (a MutationObserver, wall clock) against the
  time the daemon stored the event (its `at`). Baseline, same run: reading that event back
  from the store (a query on the same database while the daemon writes).
- Board and history with 10,000 runs stored: time to first byte p99 ≤ 150 ms. Baseline, same
  server: `/healthz`.
- CPU the pages add: the daemon's CPU (user + system, all its threads) over the same window
  with 50 runs streaming, with 10 pages open (5 boards, 5 run pages) against none; ≤ 5 %.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.async_api import Page, async_playwright
from sqlalchemy import update

from daemon.http import free_port
from daemon.store import Decision, DispatchRequest, NewRun, RunRow, Store
from daemon.testing import Project

from ._util import Result, percentile

RUNS = 50
SEEDED = 10_000
WINDOW = 8.0  # seconds of CPU measured, with and without pages
STEP_EVERY = 0.1  # each streaming run reports a step this often: 500 events a second in all
TTFB_SAMPLES = 200

STREAMER = """\
import json, sys, time
ctx = json.loads(sys.stdin.readline())
for i in range(100000):
    print(json.dumps({"type": "step", "title": f"step {i}"}), flush=True)
    time.sleep(float(ctx["inputs"]["every"]))
"""

# Records when each log line of a run page enters the DOM (ms since the epoch, by seq).
OBSERVE = """
window.__seen = {};
new MutationObserver((records) => {
  const now = Date.now();
  for (const record of records) for (const node of record.addedNodes) {
    if (node.dataset && node.dataset.seq && !(node.dataset.seq in window.__seen)) {
      window.__seen[node.dataset.seq] = now;
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def _seed(url: str) -> None:
    """10,000 ended runs of two automations, each with its event, in one go."""
    store = Store(url)
    store.create_all()
    at = datetime.now(UTC) - timedelta(days=1)
    requests = [
        DispatchRequest(
            "manual",
            "trigger",
            {"n": n},
            key=f"seed-{n}",
            received_at=at,
            decisions=[Decision(name, "matched", run=NewRun(name, "manual", {}))],
        )
        for n in range(SEEDED)
        for name in (("seeded-a" if n % 2 else "seeded-b"),)
    ]
    for start in range(0, len(requests), 500):
        store.dispatch_many(requests[start : start + 500])
    runs = RunRow.__table__  # type: ignore[attr-defined]
    with store.engine.begin() as conn:
        conn.execute(
            update(runs).values(status="succeeded", started_at=at, finished_at=at, summary="ok")
        )
    store.close()


async def _ttfb(client: httpx.AsyncClient, path: str) -> list[float]:
    out = []
    for _ in range(TTFB_SAMPLES):
        t0 = time.perf_counter()
        async with client.stream("GET", path) as response:
            out.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, path
            await response.aread()
    return out


async def _cpu_over(pid: int, seconds: float) -> float:
    """The daemon's CPU seconds over the next `seconds`."""
    start = _ticks(pid)
    await asyncio.sleep(seconds)
    return (_ticks(pid) - start) / os.sysconf("SC_CLK_TCK")


async def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "p")
        project.skill("streamer", STREAMER, inputs={"every": {"type": "number", "default": 0.1}})
        project.skill("quick", 'print(\'{"type": "finished"}\')\n')
        project.automation(
            "stream", skill="streamer", policies={"concurrency": {"max_instances": RUNS}}
        )
        for name in ("seeded-a", "seeded-b"):
            project.automation(name, skill="quick")
        state = project.root / ".nightshift"
        url = f"sqlite:///{state / 'nightshift.db'}"
        state.mkdir(parents=True)
        await asyncio.to_thread(_seed, url)
        port = free_port()
        config = project.root / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "console": False,
                    "http": {"port": port},
                    "concurrency": {"max_runs": RUNS},
                    "logging": {"level": "warning"},
                }
            )
        )
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; its end is awaited below
            [sys.executable, "-m", "daemon", "--config", str(config), "run"],
            cwd=project.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for _ in range(200):
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                await client.get("/")
                csrf = {"x-csrf-token": client.cookies["ns_csrf"]}
                health = await _ttfb(client, "/healthz")
                board = await _ttfb(client, "/")
                history = await _ttfb(client, "/history?automation=seeded-a&before=5000")
                run_ids = []
                for _ in range(RUNS):
                    made = await client.post(
                        "/api/automations/stream/run",
                        json={"inputs": {"every": STEP_EVERY}},
                        headers=csrf,
                    )
                    run_ids.append(made.json()["run_id"])
                await asyncio.sleep(2)  # every run streaming
                cpu_bare = await _cpu_over(proc.pid, WINDOW)
                latencies, reads = await _with_pages(base, url, run_ids[:5], proc.pid)
                cpu_pages = latencies.pop("cpu")
        finally:
            proc.terminate()
            proc.wait(30)
    shown = latencies["dom"]
    assert len(shown) > 500, f"only {len(shown)} log lines seen on the run pages"
    return [
        Result(
            f"event stored → in the browser's DOM, p99, {RUNS} runs streaming",
            percentile(shown, 99),
            "ms",
            "the event read back from the store, p99",
            percentile(reads, 99),
            "≤ 250 ms",
            percentile(shown, 99) <= 250,
        ),
        Result(
            f"board, {SEEDED:,} runs stored: time to first byte, p99",
            percentile(board, 99),
            "ms",
            "/healthz, p99",
            percentile(health, 99),
            "≤ 150 ms",
            percentile(board, 99) <= 150,
        ),
        Result(
            f"history page, {SEEDED:,} runs stored: time to first byte, p99",
            percentile(history, 99),
            "ms",
            "/healthz, p99",
            percentile(health, 99),
            "≤ 150 ms",
            percentile(history, 99) <= 150,
        ),
        Result(
            f"daemon CPU, {RUNS} runs streaming, 10 pages open",
            cpu_pages / WINDOW * 100,
            "%",
            "no page open",
            cpu_bare / WINDOW * 100,
            "≤ 1.05× none",
            cpu_pages <= cpu_bare * 1.05,
        ),
    ]


async def _with_pages(
    base: str, url: str, watched: list[int], pid: int
) -> tuple[dict[str, Any], list[float]]:
    """Open 5 boards and 5 run pages; the daemon's CPU meanwhile, and each watched log line's
    way from the store to the DOM."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        pages: list[Page] = []
        for _ in range(5):
            page = await browser.new_page()
            await page.goto(base + "/")
            pages.append(page)
        run_pages = []
        for run_id in watched:
            page = await browser.new_page()
            await page.add_init_script(OBSERVE)
            await page.goto(f"{base}/runs/{run_id}")
            run_pages.append((run_id, page))
        await asyncio.sleep(2)  # connected and caught up
        opened = time.time()
        cpu = await _cpu_over(pid, WINDOW)
        seen = {run_id: await page.evaluate("window.__seen") for run_id, page in run_pages}
        await browser.close()
    store = Store(url, checkpoint=False)
    dom: list[float] = []
    reads: list[float] = []
    for run_id, marks in seen.items():
        rows = await asyncio.to_thread(store.run_events, run_id)
        for row in rows:
            at = row.at.timestamp()
            if at >= opened and str(row.seq) in marks:
                dom.append(marks[str(row.seq)] - at * 1000)
        for row in rows[-50:]:
            t0 = time.perf_counter()
            await asyncio.to_thread(store.run_events, run_id, row.seq - 1)
            reads.append((time.perf_counter() - t0) * 1000)
    store.close()
    return {"dom": dom, "cpu": cpu}, reads


def main() -> list[Result]:
    return asyncio.run(run())
