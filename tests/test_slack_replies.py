"""People in a run's Slack thread steer it and decide its approvals (Socket Mode, through the
real slack-sdk SocketModeClient against the local Slack double)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.slack import Posted, SlackDouble

from .helpers import events, wait_status
from .test_runs import APPROVING

STEERABLE = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "step", "title": "ready for guidance"}), flush=True)
msg = json.loads(sys.stdin.readline())
plan = "patch only" if "patch" in msg["text"] else "everything"
print(json.dumps({"type": "finished", "status": "succeeded", "summary": f"{plan} (from {msg['by']})"}), flush=True)
"""
ANN, EVE = "U0ANN", "U0EVE"


@pytest.fixture
async def slack() -> AsyncIterator[SlackDouble]:
    async with SlackDouble() as double:
        yield double


@pytest.fixture
async def daemon(project: Project, slack: SlackDouble) -> AsyncIterator[Daemon]:
    project.skill("steerable", STEERABLE)
    project.skill("pusher", APPROVING)
    report = {"channel": "#ops", "approvers": [ANN], "steerers": []}
    project.automation("steer-me", skill="steerable", report=report)
    project.automation("push", skill="pusher", report=report)
    config = slack_config(project, slack)
    async with running_daemon(config) as d:
        await wait_for(lambda: slack.sockets)
        yield d


def slack_config(project: Project, slack: SlackDouble, **extra: Any) -> Any:
    """A config that reports to the double and listens on its Socket Mode."""
    return project.config(
        slack={
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "base_url": slack.base_url,
            "min_interval": "10ms",
        },
        **extra,
    )


async def parent_of(slack: SlackDouble, run_id: int) -> Posted:
    def find() -> Posted | None:
        return next((m for m in slack.parents() if f"run {run_id} " in m.text), None)

    parent = await wait_for(find)
    assert parent is not None
    return parent


async def approval_message(slack: SlackDouble, parent: Posted) -> Posted:
    def find() -> Posted | None:
        return next(
            (m for m in slack.thread(parent) if any(b.get("type") == "actions" for b in m.blocks)),
            None,
        )

    msg = await wait_for(find)
    assert msg is not None
    return msg


async def start(d: Daemon, name: str) -> int:
    run = await d.dispatcher.manual(name, {}, "test")
    assert run.id is not None
    return run.id


async def test_a_thread_reply_steers_the_running_script(daemon: Daemon, slack: SlackDouble) -> None:
    run_id = await start(daemon, "steer-me")
    parent = await parent_of(slack, run_id)
    await wait_for(lambda: any("ready for guidance" in m.text for m in slack.thread(parent)))
    reply = await slack.reply(parent, ANN, "keep it small: only patch versions")
    run = await wait_status(daemon, run_id, RunStatus.SUCCEEDED)
    assert run.summary == "patch only (from slack:U0ANN)"
    steer = [e for e in await events(daemon, run_id) if e["type"] == "steer_received"]
    assert steer == [
        {
            "type": "steer_received",
            "text": "keep it small: only patch versions",
            "by": "slack:U0ANN",
            "ref": f"slack:{reply.channel}:{reply.ts}",
        }
    ]
    await wait_for(lambda: (reply.channel, reply.ts, "eyes") in slack.reactions)


async def test_approve_by_button_updates_the_request(daemon: Daemon, slack: SlackDouble) -> None:
    run_id = await start(daemon, "push")
    msg = await approval_message(slack, await parent_of(slack, run_id))
    await wait_status(daemon, run_id, RunStatus.WAITING)
    ack = await slack.click(msg, ANN, "approve")
    assert ack["envelope_id"]
    await wait_status(daemon, run_id, RunStatus.SUCCEEDED)
    texts = [e.get("text") for e in await events(daemon, run_id) if e["type"] == "message"]
    assert texts == ["pushed"]
    await wait_for(lambda: msg.updates)
    assert "approved by slack:U0ANN" in msg.updates[-1]["text"]
    assert all(b["type"] != "actions" for b in msg.updates[-1]["blocks"])  # buttons gone
    await slack.click(msg, ANN, "deny")  # a second click is harmless
    await wait_for(lambda: slack.ephemeral)
    assert (await daemon.store.call(daemon.store.approvals, run_id))[0].status == "approved"


async def test_deny_by_reply_with_a_reason(daemon: Daemon, slack: SlackDouble) -> None:
    run_id = await start(daemon, "push")
    parent = await parent_of(slack, run_id)
    await approval_message(slack, parent)
    await slack.reply(parent, ANN, "deny not on Fridays")
    await wait_status(daemon, run_id, RunStatus.SUCCEEDED)
    texts = [e.get("text") for e in await events(daemon, run_id) if e["type"] == "message"]
    assert texts == ["not pushed: not on Fridays"]


async def test_strangers_and_bots_change_nothing(daemon: Daemon, slack: SlackDouble) -> None:
    run_id = await start(daemon, "push")
    parent = await parent_of(slack, run_id)
    msg = await approval_message(slack, parent)
    await slack.reply(parent, EVE, "approve")
    await slack.click(msg, EVE, "approve")
    await slack.reply(parent, "U0BOT2", "approve", bot=True)
    await wait_for(lambda: len(slack.ephemeral) == 2)
    assert {e["user"] for e in slack.ephemeral} == {EVE}
    assert slack.ephemeral[0]["text"] == "Only this automation's approvers can decide."
    assert (await daemon.store.call(daemon.store.get_run, run_id)).status == "waiting"
    await slack.click(msg, ANN, "approve")
    await wait_status(daemon, run_id, RunStatus.SUCCEEDED)


async def test_a_redelivered_envelope_is_handled_once(daemon: Daemon, slack: SlackDouble) -> None:
    run_id = await start(daemon, "steer-me")
    parent = await parent_of(slack, run_id)
    await wait_for(lambda: any("ready for guidance" in m.text for m in slack.thread(parent)))
    first: dict[str, Any] = {"event_id": "Ev0SAME"}
    await slack.reply(parent, ANN, "patch please", **first)
    await slack.reply(parent, ANN, "patch please", retry_attempt=1, **first)
    await wait_status(daemon, run_id, RunStatus.SUCCEEDED)
    steers = [e for e in await events(daemon, run_id) if e["type"] == "steer_received"]
    assert len(steers) == 1


async def test_an_approval_nobody_decides_expires_and_the_run_takes_the_safe_branch(
    project: Project, slack: SlackDouble
) -> None:
    project.skill("pusher", APPROVING)
    project.automation(
        "push",
        skill="pusher",
        report={"channel": "#ops", "approvers": [ANN]},
        policies={"approval_ttl": "300ms"},
    )
    config = slack_config(project, slack)
    async with running_daemon(config) as d:
        run_id = await start(d, "push")
        msg = await approval_message(slack, await parent_of(slack, run_id))
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        texts = [e.get("text") for e in await events(d, run_id) if e["type"] == "message"]
        assert len(texts) == 1 and texts[0].startswith("not pushed: expired at ")
        (approval,) = await d.store.call(d.store.approvals, run_id)
        assert (approval.status, approval.decided_by) == ("expired", "nightshift")
        await wait_for(lambda: msg.updates)
        assert (
            "denied by nightshift" in msg.updates[-1]["text"]
            and "expired" in msg.updates[-1]["text"]
        )


def signed(secret: str, body: bytes, ts: int) -> dict[str, str]:
    import hashlib
    import hmac

    base = f"v0:{ts}:".encode() + body
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sig,
        "Content-Type": "application/json",
    }


async def test_events_api_over_http_checks_signatures(project: Project, slack: SlackDouble) -> None:
    import json
    import time

    import httpx

    project.skill("steerable", STEERABLE)
    project.automation("steer-me", skill="steerable", report={"channel": "#ops", "steerers": [ANN]})
    secret = "slack-signing-secret-1"
    config = project.config(
        slack={
            "bot_token": slack.bot_token,
            "signing_secret": secret,
            "base_url": slack.base_url,
            "min_interval": "10ms",
        },
    )
    async with running_daemon(config) as d:
        run_id = await start(d, "steer-me")
        parent = await parent_of(slack, run_id)
        await wait_for(lambda: any("ready for guidance" in m.text for m in slack.thread(parent)))
        event = {
            "type": "event_callback",
            "event_id": "Ev0HTTP",
            "team_id": "T0TEAM",
            "event": {
                "type": "message",
                "channel": parent.channel,
                "user": ANN,
                "text": "patch only",
                "ts": "1700000001.000001",
                "thread_ts": parent.ts,
            },
        }
        body = json.dumps(event).encode()
        now = int(time.time())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as c:
            challenge = json.dumps({"type": "url_verification", "challenge": "abc"}).encode()
            ok = await c.post(
                "/slack/events", content=challenge, headers=signed(secret, challenge, now)
            )
            assert ok.json() == {"challenge": "abc"}
            bad = await c.post("/slack/events", content=body, headers=signed("wrong", body, now))
            stale = await c.post(
                "/slack/events", content=body, headers=signed(secret, body, now - 600)
            )
            assert (bad.status_code, stale.status_code) == (401, 401)
            assert d.store.list_events(source="slack") == []
            good = await c.post("/slack/events", content=body, headers=signed(secret, body, now))
            assert good.status_code == 200
        run = await wait_status(d, run_id, RunStatus.SUCCEEDED)
        assert run.summary == "patch only (from slack:U0ANN)"


async def test_a_click_after_a_restart_reaches_the_retried_run(
    project: Project, slack: SlackDouble
) -> None:
    project.skill("pusher", APPROVING)
    project.automation("push", skill="pusher", report={"channel": "#ops", "approvers": [ANN]})
    config = slack_config(project, slack, shutdown_grace="100ms")
    async with running_daemon(config) as d:
        await wait_for(lambda: slack.sockets)
        run_id = await start(d, "push")
        parent = await parent_of(slack, run_id)
        first_request = await approval_message(slack, parent)
        await wait_status(d, run_id, RunStatus.WAITING)
    # The daemon stopped while the run waited: it is interrupted, and a retry is queued.
    async with running_daemon(config) as d:
        await wait_for(lambda: len(slack.sockets) == 1)
        retry = await wait_status(d, run_id + 1, RunStatus.WAITING)
        assert retry.retry_of == run_id
        await slack.click(first_request, ANN, "approve")  # the button from before the restart
        await wait_status(d, run_id + 1, RunStatus.SUCCEEDED)
        texts = [e.get("text") for e in await events(d, run_id + 1) if e["type"] == "message"]
        assert texts == ["pushed"]
        await wait_for(lambda: any("succeeded" in m.text for m in slack.thread(parent)))
    assert len(slack.parents()) == 1  # the retry reported in the same thread
    thread = "\n".join(m.text for m in slack.thread(parent))
    assert "attempt 2 started" in thread and "interrupted" in thread


async def test_chat_commands_start_runs_that_report_where_they_were_asked(
    daemon: Daemon, slack: SlackDouble
) -> None:
    ask = await slack.mention("C0OPS", ANN, "run steer-me")
    reply_parent = await wait_for(
        lambda: next((m for m in slack.thread(ask) if "steer-me" in m.text), None)
    )
    assert reply_parent.text.startswith(
        "steer-me · run 1 ·"
    )  # the run's parent, in the asker's thread
    run = daemon.store.get_run(1)
    assert run.trigger == "manual"
    await wait_for(lambda: any("ready for guidance" in m.text for m in slack.thread(ask)))
    await slack.reply(ask, ANN, "patch only")  # steering works in that thread too
    assert (
        await wait_status(daemon, 1, RunStatus.SUCCEEDED)
    ).summary == "patch only (from slack:U0ANN)"

    await slack.mention("C0OPS", EVE, "run push")
    await wait_for(lambda: slack.ephemeral)
    assert slack.ephemeral[-1]["text"] == "You cannot start push."

    await slack.slash("C0OPS", ANN, "run push")
    await wait_for(lambda: daemon.store.list_runs(automation="push"))
    await wait_status(daemon, 2, RunStatus.WAITING)
    status = await slack.mention("C0OPS", ANN, "status")
    answer = await wait_for(lambda: next((m for m in slack.thread(status)), None))
    assert answer.text == "• run 2 `push` *waiting*"
    assert any(m.text.startswith("push · run 2") for m in slack.parents())  # slash: top level


PAUSABLE = """\
import json, os, pathlib, sys
ctx = json.loads(sys.stdin.readline())
pathlib.Path(ctx["workdir"], "pid").write_text(str(os.getpid()))
print(json.dumps({"type": "step", "title": "working"}), flush=True)
for line in sys.stdin:
    if json.loads(line).get("text") == "finish":
        break
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "finished"}), flush=True)
"""


def proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split()[2]


async def test_pause_resume_retry_and_the_second_acknowledgement(
    project: Project, slack: SlackDouble
) -> None:
    project.skill("pausable", PAUSABLE)
    project.automation("pausable", skill="pausable", report={"channel": "#ops", "steerers": [ANN]})
    config = slack_config(project, slack, shutdown_grace="100ms")
    async with running_daemon(config) as d:
        await wait_for(lambda: slack.sockets)
        run_id = await start(d, "pausable")
        parent = await parent_of(slack, run_id)
        pidfile = d.config.state_dir / "runs" / str(run_id) / "pid"
        await wait_for(pidfile.exists)
        pid = int(pidfile.read_text())
        await slack.reply(parent, ANN, "pause")
        await wait_for(lambda: proc_state(pid) == "T")  # stopped
        await wait_status(d, run_id, RunStatus.PAUSED)  # not WAITING: no approval is open
        await slack.reply(parent, ANN, "resume")
        await wait_for(lambda: proc_state(pid) != "T")
        await wait_status(d, run_id, RunStatus.RUNNING)
        finish = await slack.reply(parent, ANN, "finish")
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        # Seen at once, then taken by the agent.
        await wait_for(lambda: (finish.channel, finish.ts, "white_check_mark") in slack.reactions)
        assert (finish.channel, finish.ts, "eyes") in slack.reactions
        await slack.reply(parent, ANN, "retry")
        again = await wait_for(
            lambda: (
                d.store.list_runs(automation="pausable", limit=5)[0].id != run_id
                and d.store.list_runs(limit=1)[0]
            )
        )
        assert again.inputs == {} and again.id == run_id + 1
        await wait_for(
            lambda: any(
                m.text.startswith(f"pausable · run {run_id + 1}") for m in slack.thread(parent)
            )
        )


async def test_a_user_group_can_approve(project: Project, slack: SlackDouble) -> None:
    slack.usergroups["S0ONCALL"] = {EVE}
    project.skill("pusher", APPROVING)
    project.automation(
        "push", skill="pusher", report={"channel": "#ops", "approvers": ["S0ONCALL"]}
    )
    config = slack_config(project, slack)
    async with running_daemon(config) as d:
        await wait_for(lambda: slack.sockets)
        run_id = await start(d, "push")
        msg = await approval_message(slack, await parent_of(slack, run_id))
        await slack.click(msg, ANN, "approve")  # not in the group
        await wait_for(lambda: slack.ephemeral)
        await slack.click(msg, EVE, "approve")
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        (approval,) = await d.store.call(d.store.approvals, run_id)
        assert approval.decided_by == "slack:U0EVE"


async def test_socket_mode_reconnects_after_a_refresh(daemon: Daemon, slack: SlackDouble) -> None:
    opened = sum(1 for c in slack.calls if c[0] == "apps.connections.open")
    first = slack.sockets[-1]
    await slack.disconnect()
    await wait_for(lambda: slack.sockets and slack.sockets[-1] is not first, 15)
    assert sum(1 for c in slack.calls if c[0] == "apps.connections.open") > opened
    run_id = await start(daemon, "steer-me")
    parent = await parent_of(slack, run_id)
    await wait_for(lambda: any("ready for guidance" in m.text for m in slack.thread(parent)))
    await slack.reply(parent, ANN, "patch only")  # delivered over the new connection
    assert (await wait_status(daemon, run_id, RunStatus.SUCCEEDED)).summary.startswith("patch only")
