"""The command center: its JSON API with every refusal a client can earn, its access rules,
and the page itself in a real browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from daemon.app import Daemon
from daemon.runs import RunStatus
from daemon.store import Decision, NewRun, utcnow
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.slack import SlackDouble

from .helpers import events, wait_status

CHROMIUM = "/usr/bin/chromium"

# Steps, waits for steering, asks to push, and finishes: everything a person does on the page.
SUPERVISED = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "step", "title": "waiting for steering"}), flush=True)
steer = json.loads(sys.stdin.readline())
print(json.dumps({"type": "message", "text": "steered: " + steer["text"]}), flush=True)
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push",
                  "description": "push the fix"}), flush=True)
decision = json.loads(sys.stdin.readline())
said = "approved" if decision["approved"] else "denied"
print(json.dumps({"type": "message", "text": said + ": " + str(decision.get("reason"))}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "done"}), flush=True)
"""


def supervised(project: Project) -> None:
    project.skill("supervised", SUPERVISED)
    project.automation("supervised", skill="supervised")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


def base(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.http_port}"


@contextlib.asynccontextmanager
async def page_client(d: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    """A client that behaves as the page does: it has visited `/` (the CSRF cookie) and
    sends the token back."""
    async with httpx.AsyncClient(base_url=base(d)) as client:
        await client.get("/")
        client.headers["x-csrf-token"] = client.cookies["ns_csrf"]
        yield client


# -- the JSON API ----------------------------------------------------------------------------
async def test_every_refusal_is_a_clear_error_and_changes_nothing(project: Project) -> None:
    supervised(project)
    async with running_daemon(project.config()) as d, page_client(d) as api:
        assert (await api.get("/api/runs/999")).json() == {"error": "run 999 not found"}
        assert (await api.post("/api/runs/999/steer", json={"text": "x"})).status_code == 404
        bad = await api.post("/api/automations/supervised/run", json={"inputs": [1]})
        assert bad.status_code == 400 and bad.json()["error"].startswith("inputs:")
        unknown = await api.post("/api/automations/nope/run", json={})
        assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
        started = await api.post("/api/automations/supervised/run", json={})
        assert started.status_code == 201
        run_id = started.json()["run_id"]
        empty = await api.post(f"/api/runs/{run_id}/steer", json={"text": ""})
        assert empty.status_code == 400 and empty.json()["error"].startswith("text:")
        await wait_for(lambda: d.executor.active_ids == [run_id])
        await wait_status(d, run_id, RunStatus.RUNNING)
        assert (await api.post(f"/api/runs/{run_id}/steer", json={"text": "go"})).status_code == 202
        await wait_status(d, run_id, RunStatus.WAITING)
        approve = await api.post(f"/api/runs/{run_id}/approve", json={"approval_id": "push-1"})
        assert approve.status_code == 202
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        (decided,) = await d.store.call(d.store.approvals, run_id)
        assert decided.decided_by is not None and decided.decided_by.startswith("web:")
        late = await api.post(f"/api/runs/{run_id}/deny", json={"approval_id": "push-1"})
        assert late.status_code == 409 and "not running" in late.json()["error"]
        after = await api.post(f"/api/runs/{run_id}/steer", json={"text": "too late"})
        assert after.status_code == 409 and after.json() == {
            "error": f"run {run_id} is not running"
        }
        assert (await api.post(f"/api/runs/{run_id}/pause")).status_code == 409
        (still,) = await d.store.call(d.store.approvals, run_id)
        assert still.status == "approved"  # the late deny changed nothing
        log = await events(d, run_id)
        assert [e["text"] for e in log if e["type"] == "steer_received"] == ["go"]
        board = (await api.get("/api/board")).json()["columns"]
        assert [c["key"] for c in board] == ["needs-you", "running", "queued", "failed", "done"]
        assert [r["id"] for r in board[-1]["runs"]] == [run_id]
        listed = (await api.get("/api/runs", params={"status": "succeeded"})).json()["runs"]
        assert [r["id"] for r in listed] == [run_id]
        assert (await api.get("/api/runs", params={"status": "bogus"})).status_code == 400
        shown = (await api.get(f"/api/runs/{run_id}/events", params={"after": 2})).json()
        assert next(e["seq"] for e in shown["events"]) == 3


async def test_a_second_decision_is_told_who_decided_first(project: Project) -> None:
    project.skill(
        "two",
        """\
import json, sys
ctx = json.loads(sys.stdin.readline())
for n in (1, 2):
    print(json.dumps({"type": "approval_request", "id": f"a{n}", "action": "go",
                      "description": "step"}), flush=True)
    sys.stdin.readline()
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "done"}), flush=True)
""",
    )
    project.automation("two", skill="two")
    async with running_daemon(project.config()) as d, page_client(d) as api:
        run_id = (await api.post("/api/automations/two/run", json={})).json()["run_id"]

        async def pending(*ids: str) -> bool:
            waiting = await d.store.call(d.store.approvals, run_id, "pending")
            return [a.request_id for a in waiting] == list(ids)

        await wait_for(lambda: pending("a1"))
        ok = await api.post(f"/api/runs/{run_id}/approve", json={"approval_id": "a1"})
        assert ok.status_code == 202
        await wait_for(lambda: pending("a2"))
        late = await api.post(
            f"/api/runs/{run_id}/deny", json={"approval_id": "a1", "reason": "no"}
        )
        assert late.status_code == 409
        assert late.json()["error"].startswith("approval 'a1' was already approved by web:")
        await api.post(f"/api/runs/{run_id}/approve", json={})
        await wait_status(d, run_id, RunStatus.SUCCEEDED)


# -- access ----------------------------------------------------------------------------------
async def test_beyond_loopback_a_token_is_needed_and_a_read_only_one_changes_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervised(project)
    monkeypatch.setenv("NS_TEST_OPS", "ops-" + "o" * 20)
    monkeypatch.setenv("NS_TEST_VIEW", "view-" + "v" * 20)
    config = project.config(
        http={"port": 0, "host": "0.0.0.0"},  # noqa: S104 - the bind under test
        center={
            "tokens": [
                {"name": "ops", "token": "${NS_TEST_OPS}"},
                {"name": "viewer", "token": "${NS_TEST_VIEW}", "read_only": True},
            ]
        },
    )
    async with running_daemon(config) as d, httpx.AsyncClient(base_url=base(d)) as anon:
        assert (await anon.get("/api/board")).status_code == 401
        assert (await anon.post("/api/automations/supervised/run")).status_code == 401
        login = await anon.get("/", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/login"
        assert (await anon.get("/login")).status_code == 200
        assert (await anon.get("/healthz")).status_code == 200  # not the center's to guard
        viewer = {"authorization": "Bearer view-" + "v" * 20}
        assert (await anon.get("/api/board", headers=viewer)).status_code == 200
        refused = await anon.post("/api/automations/supervised/run", headers=viewer)
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        ops = {"authorization": "Bearer ops-" + "o" * 20}
        made = await anon.post("/api/automations/supervised/run", headers=ops, json={})
        assert made.status_code == 201  # a bearer token is not ambient: no CSRF token needed
        run_id = made.json()["run_id"]
        assert (await d.store.call(d.store.get_run, run_id)).automation == "supervised"
        # Signed in by the form (a cookie, which a browser sends on its own): CSRF applies.
        wrong = await anon.post("/login", data={"token": "nope"})
        assert wrong.status_code == 401
        signed = await anon.post("/login", data={"token": "ops-" + "o" * 20})
        assert signed.status_code == 303 and "ns_token" in anon.cookies
        await anon.get("/")
        no_csrf = await anon.post(f"/api/runs/{run_id}/cancel", json={})
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
        with_csrf = await anon.post(
            f"/api/runs/{run_id}/cancel", json={}, headers={"x-csrf-token": anon.cookies["ns_csrf"]}
        )
        assert with_csrf.status_code == 202
        done = await wait_status(d, run_id, RunStatus.CANCELLED)
        assert done.summary == "cancelled by web:ops"


async def test_on_loopback_a_post_without_the_pages_csrf_token_is_refused(
    project: Project,
) -> None:
    supervised(project)
    async with running_daemon(project.config()) as d, httpx.AsyncClient(base_url=base(d)) as c:
        refused = await c.post("/api/automations/supervised/run", json={})
        assert refused.status_code == 403
        assert await d.store.call(d.store.list_runs) == []  # nothing started


# -- the page, in a browser --------------------------------------------------------------------
async def column_of(page: Page, run_id: int) -> str | None:
    return await page.evaluate(
        "id => document.getElementById('run-' + id)?.closest('.column')?.dataset.column ?? null",
        run_id,
    )


async def test_a_run_supervised_from_the_page_end_to_end(
    project: Project, browser: Browser, slack: SlackDouble
) -> None:
    project.skill("supervised", SUPERVISED)
    project.automation("supervised", skill="supervised", report={"channel": "#ops"})
    config = project.config(
        slack={
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "base_url": slack.base_url,
            "min_interval": "10ms",
        }
    )
    async with running_daemon(config) as d:
        board = await browser.new_page()
        await board.goto(base(d) + "/")
        await expect(board.locator("#live")).to_have_text("live")
        run = await d.dispatcher.manual("supervised", {}, "test")
        assert run.id is not None
        await expect(board.locator(f"#col-running #run-{run.id}")).to_be_visible()
        await expect(board.locator(f"#run-{run.id} .last")).to_have_text("waiting for steering")

        page = await browser.new_page()
        await page.goto(f"{base(d)}/runs/{run.id}")
        await expect(page.locator("#log")).to_contain_text("waiting for steering")
        await page.fill("#steer-text", "only patch versions")
        await page.press("#steer-text", "Enter")
        await expect(page.locator("#steer-state")).to_contain_text("taken by the agent")
        await expect(page.locator("#log")).to_contain_text("steered: only patch versions")

        # Waiting for a person: the board moves the card without a reload.
        await expect(board.locator(f"#col-needs-you #run-{run.id}")).to_be_visible()
        approval = page.locator('[data-approval="push-1"]')
        await expect(approval).to_contain_text("asks to push")
        await approval.locator(".reason").fill("ship it")
        await approval.locator("button.approve").click()
        await expect(approval.locator(".outcome")).to_contain_text("approved by web:")
        await expect(page.locator("#run-status")).to_have_text("succeeded")
        await expect(page.locator("#live")).to_have_text("ended")
        await expect(board.locator(f"#col-done #run-{run.id}")).to_be_visible()
        assert await column_of(board, run.id) == "done"

        (decided,) = await d.store.call(d.store.approvals, run.id)
        assert (decided.status, decided.reason) == ("approved", "ship it")
        # The Slack thread's request says who decided on the page, its buttons gone.
        parent = await wait_for(lambda: next(iter(slack.parents()), None))
        request = next(m for m in slack.thread(parent) if "push the fix" in m.text)
        await wait_for(lambda: request.updates)
        assert f"approved by {decided.decided_by}" in request.updates[-1]["text"]
        assert all(b["type"] != "actions" for b in request.updates[-1]["blocks"])
        log = await events(d, run.id)
        assert decided.decided_by is not None and decided.decided_by.startswith("web:")
        assert any(e["type"] == "message" and e["text"] == "approved: ship it" for e in log)
        # The page's log holds each event once, in order, as stored.
        shown = await page.eval_on_selector_all(
            "#log li", "items => items.map(i => +i.dataset.seq)"
        )
        stored = await d.store.call(d.store.run_events, run.id)
        assert shown == [row.seq for row in stored]


async def test_a_reconnecting_log_resumes_after_the_last_event_it_saw(project: Project) -> None:
    supervised(project)
    async with running_daemon(project.config()) as d, page_client(d) as api:
        run = await d.dispatcher.manual("supervised", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.RUNNING)
        await d.executor.steer(run.id, "go", "test")
        await wait_status(d, run.id, RunStatus.WAITING)
        await d.executor.decide(run.id, None, True, "test", None)
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        stored = [row.seq for row in await d.store.call(d.store.run_events, run.id)]
        frames = await sse(api, f"/api/runs/{run.id}/stream", {"last-event-id": str(stored[2])})
        assert [f["id"] for f in frames if f["event"] == "run-event"] == stored[3:]
        assert frames[-1]["event"] == "end"
        again = await sse(api, f"/api/runs/{run.id}/stream", {"last-event-id": str(stored[-1])})
        assert [f["event"] for f in again] == ["end"]


async def sse(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The frames of a finite event stream."""
    frames: list[dict[str, Any]] = []
    async with client.stream("GET", url, headers=headers) as response:
        text = (await response.aread()).decode()
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            frames.append(
                {
                    "event": fields["event"],
                    "id": int(fields["id"]) if "id" in fields else None,
                    "data": json.loads(fields["data"]),
                }
            )
    return frames


# -- automations -------------------------------------------------------------------------------
QUICK = """\
import json
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "ticked"}))
"""


async def skipped_fires(d: Daemon, name: str) -> list[str]:
    """The details of the schedule fires of `name` recorded as skipped."""
    out = []
    for event in await d.store.call(d.store.list_events, 200, "schedule"):
        found = await d.store.call(d.store.get_event, event.id or 0)
        assert found is not None
        out += [x.detail for x in found[1] if x.automation == name and x.decision == "skipped"]
    return out


async def test_a_paused_automation_skips_its_fires_across_a_restart(
    project: Project, browser: Browser
) -> None:
    project.skill("quick", QUICK)
    project.automation("ticker", skill="quick", triggers=[{"type": "interval", "every": "1s"}])
    project.automation("broken", text="name: broken\nskill: quick\ntriggers: [{type: cron}]\n")
    async with running_daemon(project.config()) as d:
        page = await browser.new_page()
        await page.goto(base(d) + "/automations")
        row = page.locator("#automation-ticker")
        await expect(row).to_contain_text("every 1s")
        problems = page.locator(".problems")
        await expect(problems).to_contain_text("broken.yaml:3")  # the broken file, by line
        await wait_for(lambda: d.store.list_runs(automation="ticker"))  # it fires meanwhile
        await row.locator("button[data-pause='pause']").click()
        await expect(page.locator("#automation-ticker .paused-badge")).to_contain_text("web:")
        assert "ticker" in d.dispatcher.paused()
    async with running_daemon(project.config()) as d:  # a restart keeps it paused
        assert "ticker" in d.dispatcher.paused()
        ran = len(await d.store.call(d.store.list_runs, automation="ticker"))
        details = await wait_for(lambda: skipped_fires(d, "ticker"))
        assert details[0].startswith("paused by web:")
        assert len(await d.store.call(d.store.list_runs, automation="ticker")) == ran
        async with page_client(d) as api:
            refused = await api.post("/api/automations/ticker/run", json={})
            assert refused.status_code == 400 and "is paused" in refused.json()["error"]
            listed = (await api.get("/api/automations")).json()
            (ticker,) = [a for a in listed["automations"] if a["name"] == "ticker"]
            assert ticker["paused"]["by"].startswith("web:") and ticker["next_fire"] is None
            assert any(p["file"].endswith("broken.yaml") for p in listed["problems"])
            assert (await api.post("/api/automations/nope/pause")).status_code == 404
            assert (await api.post("/api/automations/ticker/resume")).status_code == 202
        await wait_for(
            lambda: len(d.store.list_runs(automation="ticker", statuses=["succeeded"])) > ran
        )


async def test_run_now_from_the_page_opens_the_new_run(project: Project, browser: Browser) -> None:
    project.skill("quick", QUICK)
    project.automation("once", skill="quick")
    async with running_daemon(project.config()) as d:
        page = await browser.new_page()
        await page.goto(base(d) + "/automations")
        await page.locator("#automation-once summary").click()
        await page.locator("#automation-once .run-form button").click()
        await page.wait_for_url("**/runs/*")
        await expect(page.locator("#run-status")).to_have_text("succeeded")
        (run,) = await d.store.call(d.store.list_runs, automation="once")
        assert page.url.endswith(f"/runs/{run.id}")


# -- events and history ----------------------------------------------------------------------
def seed_runs(d: Daemon, count: int) -> list[int]:
    """`count` runs of two automations, stored as an event each, every third one failed."""
    ids = []
    for n in range(count):
        name = "alpha" if n % 2 == 0 else "beta"
        made = d.store.dispatch(
            source="manual",
            type="trigger",
            key=f"seed-{n}",
            payload={"n": n},
            decisions=[Decision(name, "matched", run=NewRun(name, "manual", {"n": n}))],
        )
        assert made is not None and made.runs[0].id is not None
        run_id = made.runs[0].id
        d.store.end_run(run_id, "failed" if n % 3 == 0 else "succeeded", f"run {n}", utcnow())
        ids.append(run_id)
    return ids


async def test_history_is_filtered_and_paged_and_events_say_what_they_meant(
    project: Project, tmp_path: Path
) -> None:
    project.skill("quick", QUICK)
    for name in ("alpha", "beta"):
        project.automation(name, skill="quick", workspace={"repository": str(tmp_path / name)})
    async with running_daemon(project.config()) as d, page_client(d) as api:
        ids = await asyncio.to_thread(seed_runs, d, 130)
        alpha = [i for n, i in enumerate(ids) if n % 2 == 0][::-1]  # 65 runs, newest first
        page = (await api.get("/api/history", params={"automation": "alpha"})).json()
        assert [r["id"] for r in page["runs"]] == alpha[:50]
        params = {"automation": "alpha", "before": page["next_before"]}
        rest = (await api.get("/api/history", params=params)).json()
        assert [r["id"] for r in rest["runs"]] == alpha[50:] and rest["next_before"] is None
        failed = await api.get("/api/history", params={"automation": "alpha", "status": "failed"})
        expected = [i for n, i in enumerate(ids) if n % 6 == 0][::-1]
        assert [r["id"] for r in failed.json()["runs"]] == expected
        by_repo = await api.get("/api/history", params={"repository": str(tmp_path / "beta")})
        assert {r["automation"] for r in by_repo.json()["runs"]} == {"beta"}
        assert len((await api.get("/api/history", params={"trigger": "man"})).json()["runs"]) == 50
        assert (await api.get("/api/history", params={"trigger": "github"})).json()["runs"] == []
        today = utcnow().date().isoformat()
        assert len((await api.get("/api/history", params={"since": today})).json()["runs"]) == 50
        assert (await api.get("/api/history", params={"until": today})).json()["runs"] == []
        bad = await api.get("/api/history", params={"since": "last tuesday"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("since:")
        assert (await api.get("/api/history", params={"status": "nope"})).status_code == 400
        html = await api.get("/history", params={"automation": "beta"})
        assert html.status_code == 200 and 'id="older"' in html.text
        await d.store.call(d.store.add_usage, ids[-1], 4200, 0.37)  # what its agent reported
        newest = (await api.get("/api/history", params={"limit": 1})).json()["runs"][0]
        assert (newest["tokens"], newest["cost_usd"]) == (4200, 0.37)
        assert "4200 tokens · $0.37" in (await api.get(f"/runs/{ids[-1]}")).text
        assert "not a date" in (await api.get("/history", params={"since": "x"})).text

        listed = (await api.get("/api/events", params={"limit": 3})).json()["events"]
        assert [e["id"] for e in listed] == [130, 129, 128] and "payload" not in listed[0]
        assert listed[0]["decisions"] == [
            {"automation": "beta", "decision": "matched", "detail": "", "run_id": ids[-1]}
        ]
        one = (await api.get("/api/events/130")).json()
        assert one["payload"] == {"n": 129}
        assert (await api.get("/api/events/9999")).status_code == 404
        assert (await api.get("/events")).status_code == 200


# -- the diff and its review -------------------------------------------------------------------
REVIEWED = """\
import json, pathlib, sys
ctx = json.loads(sys.stdin.readline())
calc = pathlib.Path(ctx["workdir"], "calc.py")
calc.write_text(calc.read_text().replace("a - b", "a + b"))
print(json.dumps({"type": "step", "title": "edited calc.py"}), flush=True)
review = json.loads(sys.stdin.readline())
print(json.dumps({"type": "message", "text": review["text"]}), flush=True)
calc.write_text(calc.read_text().replace("a + b", "b + a"))  # the commented line changes
print(json.dumps({"type": "file_change", "path": "calc.py"}), flush=True)
sys.stdin.readline()
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "reviewed"}), flush=True)
"""


async def test_line_comments_become_one_steering_message_and_then_outdated(
    project: Project, repo: Path, browser: Browser
) -> None:
    project.skill("reviewed", REVIEWED)
    project.automation(
        "reviewed", skill="reviewed", workspace={"repository": str(repo), "isolate": True}
    )
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("reviewed", {}, "test")
        assert run.id is not None
        page = await browser.new_page()
        await page.goto(f"{base(d)}/runs/{run.id}")
        await expect(page.locator("#log")).to_contain_text("edited calc.py")
        added = page.locator("section.file[data-path='calc.py'] tr.kind-add td.commentable")
        await expect(added).to_have_count(1)
        await expect(page.locator("#diff-source")).to_contain_text("as it stands now")
        await added.click()
        await page.fill("tr.draft textarea", "why is this not commutative-safe?")
        await page.click("tr.draft button.add-comment")
        await expect(page.locator("#send-review")).to_have_text("Send review (1)")
        await page.click("#send-review")
        await expect(page.locator("#review-state")).to_contain_text("one message (1 comments)")
        # The agent got one message: file, line, the hunk and the text.
        message = page.locator("#log li.type-message", has_text="Review of your diff")
        await expect(message).to_contain_text("calc.py, line 2:")
        await expect(message).to_contain_text("+    return a + b")
        await expect(message).to_contain_text("why is this not commutative-safe?")
        # The agent changed the line since: the comment is shown as outdated.
        await expect(page.locator(".outdated-comments")).to_contain_text("calc.py:2")
        steers = [e for e in await events(d, run.id) if e["type"] == "steer_received"]
        assert len(steers) == 1 and steers[0]["text"].startswith("Review of your diff from web:")
        (kept,) = await d.store.call(d.store.review_comments, run.id)
        assert (kept.path, kept.line, kept.anchor) == ("calc.py", 2, "    return a + b")
        async with page_client(d) as api:
            wrong = await api.post(
                f"/api/runs/{run.id}/review",
                json={"comments": [{"path": "calc.py", "line": 40, "text": "?"}]},
            )
            assert (
                wrong.status_code == 400 and "not a line of the run's diff" in wrong.json()["error"]
            )
            assert (
                await api.post(f"/api/runs/{run.id}/steer", json={"text": "done"})
            ).status_code == 202
            await wait_status(d, run.id, RunStatus.SUCCEEDED)
            final = (await api.get(f"/api/runs/{run.id}/diff")).json()
            assert final["source"] == "final" and final["files"][0]["path"] == "calc.py"
            assert [c["outdated"] for c in final["comments"]] == [True]
            late = await api.post(
                f"/api/runs/{run.id}/review",
                json={"comments": [{"path": "calc.py", "line": 2, "text": "late"}]},
            )
            assert late.status_code == 409
        assert len(await d.store.call(d.store.review_comments, run.id)) == 1  # nothing kept


async def test_behind_a_trusted_proxy_its_header_says_who_acts(project: Project) -> None:
    supervised(project)
    config = project.config(
        http={"port": 0, "host": "0.0.0.0"},  # noqa: S104 - the bind under test
        center={"trusted_header": "X-Forwarded-User"},
    )
    async with running_daemon(config) as d, httpx.AsyncClient(base_url=base(d)) as client:
        assert (await client.get("/api/board")).status_code == 401  # no header, no token
        proxied = {"x-forwarded-user": "ann@example.com"}
        assert (await client.get("/", headers=proxied)).status_code == 200
        made = await client.post(
            "/api/automations/supervised/run",
            json={},
            headers={**proxied, "x-csrf-token": client.cookies["ns_csrf"]},
        )
        assert made.status_code == 201
        run = await d.store.call(d.store.get_run, made.json()["run_id"])
        event = await d.store.call(d.store.get_event, run.event_id or 0)
        assert event is not None and event[0].payload["by"] == "web:ann@example.com"
