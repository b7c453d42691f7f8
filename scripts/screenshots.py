"""Screenshots of the command center for the README: a real daemon with a few runs (one
waiting for a person, one running, ended ones), the board and a run's page, taken with
Debian's chromium through Playwright. Run: .venv/bin/python scripts/screenshots.py"""

# ruff: noqa: E501 - the demo skills below are scripts in strings, one event per line

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"

WAITS = """\
import json, sys, time
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "step", "title": "Checking the lockfile"}), flush=True)
print(json.dumps({"type": "command", "command": "uv lock --upgrade-package httpx",
                  "exit_code": 0, "output_tail": "Updated httpx v0.27.2 -> v0.28.1"}), flush=True)
print(json.dumps({"type": "message", "text": "httpx 0.28.1 is a minor release; tests pass"}), flush=True)
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push",
                  "description": "push branch deps/httpx-0.28.1 and open a pull request"}), flush=True)
sys.stdin.readline()
"""
WORKS = """\
import json, sys, time
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "step", "title": "Reading the failing job's log"}), flush=True)
print(json.dumps({"type": "command", "command": "pytest -q tests/test_api.py",
                  "exit_code": 1, "output_tail": "FAILED tests/test_api.py::test_retry - TimeoutError"}), flush=True)
print(json.dumps({"type": "step", "title": "Bisecting the flaky retry test"}), flush=True)
sys.stdin.readline()
"""
ENDS = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "step", "title": "Labelled the issue"}), flush=True)
status = "failed" if ctx["inputs"].get("fail") else "succeeded"
print(json.dumps({"type": "finished", "status": status,
                  "summary": "GitHub answered 502" if status == "failed" else "labelled bug, area/api"}), flush=True)
"""


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "demo")
        project.skill("deps", WAITS)
        project.skill("ci-fix", WORKS)
        project.skill("triage", ENDS, inputs={"fail": {"type": "boolean", "default": False}})
        project.automation("nightly-deps", skill="deps")
        project.automation("ci-failure-fix", skill="ci-fix")
        project.automation("issue-triage", skill="triage")
        async with running_daemon(project.config()) as d:
            for _ in range(3):
                await d.dispatcher.manual("issue-triage", {}, "cli:ann")
            await d.dispatcher.manual("issue-triage", {"fail": True}, "cli:ann")
            fix = await d.dispatcher.manual("ci-failure-fix", {}, "github")
            deps = await d.dispatcher.manual("nightly-deps", {}, "schedule")
            assert deps.id is not None
            assert fix.id is not None
            await wait_for(lambda: d.store.get_run(deps.id or 0).status == RunStatus.WAITING)
            base = f"http://127.0.0.1:{d.http_port}"
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                page = await browser.new_page(viewport={"width": 1400, "height": 700})
                await page.goto(base + "/")
                await page.wait_for_selector("#live.on")
                OUT.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(OUT / "board.png"))
                await page.goto(f"{base}/runs/{deps.id}")
                await page.wait_for_selector("#log li.type-approval_request")
                await page.fill("#steer-text", "only patch versions, please")
                await page.screenshot(path=str(OUT / "run.png"), full_page=True)
                await browser.close()
            for run_id in (deps.id, fix.id):
                await d.executor.cancel(run_id, "screenshots")


if __name__ == "__main__":
    asyncio.run(main())
