"""Runs report to a Slack thread (through the real slack-sdk client and a local Slack double):
one parent message kept up to date, replies in order, nothing lost while Slack is away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.cli import main
from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.slack import SlackDouble

from .helpers import wait_status

STEPS = """\
import json, os, sys
sys.stdin.readline()
def emit(**e): print(json.dumps(e), flush=True)
emit(type="step", title="Checking dependencies")
emit(type="command", command="pip list --outdated", exit_code=1, output_tail="boom " + os.environ["TOKEN"])
emit(type="message", text="3 packages behind")
emit(type="finished", status="succeeded", summary="2 bumps proposed")
"""


@pytest.fixture
async def slack() -> AsyncIterator[SlackDouble]:
    async with SlackDouble() as double:
        yield double


def slack_project(project: Project, channel: str = "#ops", script: str = STEPS) -> None:
    project.skill("deps", script)
    project.automation(
        "deps", skill="deps", report={"channel": channel}, env={"TOKEN": "${DEPS_TOKEN}"}
    )


def config(project: Project, slack: SlackDouble, **extra: Any) -> Any:
    return project.config(
        slack={"bot_token": slack.bot_token, "base_url": slack.base_url, "min_interval": "20ms"},
        **extra,
    )


def all_sent(d: Daemon) -> bool:
    items = d.store.outbox()
    return bool(items) and all(i.status != "pending" for i in items)


def ended_and_sent(d: Daemon, run_id: int) -> bool:
    """The run's end is in its outbox (reported after its state is stored) and nothing is
    pending any more."""
    items = d.store.outbox(run_id)
    ended = any(i.kind == "reply" and "*succeeded*" in str(i.payload) for i in items)
    return ended and all_sent(d)


def parent_says(slack: SlackDouble, status: str) -> bool:
    parents = slack.parents("C0OPS")
    return bool(parents) and parents[0].current_text.endswith(status)


async def test_a_run_reports_in_one_thread_from_start_to_summary(
    project: Project, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "tok-s3cr3t-42")
    slack_project(project)
    async with running_daemon(config(project, slack)) as d:
        run = await d.dispatcher.manual("deps", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        # The outbox can be momentarily all sent before the reporter has queued the final
        # update: wait for what the thread must show, not for a lull.
        await wait_for(lambda: all_sent(d) and parent_says(slack, "succeeded"))
    (parent,) = slack.parents("C0OPS")
    assert parent.text == f"deps · run {run.id} · running"
    assert parent.current_text == f"deps · run {run.id} · succeeded"
    assert "2 bumps proposed" in parent.updates[-1]["blocks"][0]["text"]["text"]
    thread = "\n".join(m.text for m in slack.thread(parent))
    order = [
        "Checking dependencies",
        "pip list --outdated",
        "3 packages behind",
        "*succeeded*: 2 bumps proposed",
    ]
    positions = [thread.index(part) for part in order]
    assert positions == sorted(positions)
    assert "tok-s3cr3t-42" not in str(slack.calls) and "boom ***" in thread


async def test_slack_down_then_back_delivers_everything_in_order(
    project: Project, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "x")
    slack_project(project)
    async with running_daemon(config(project, slack)) as d:
        await slack.stop()  # Slack unreachable: connections refused
        run = await d.dispatcher.manual("deps", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: len(d.store.outbox(status="pending")) == 6)
        assert slack.messages == []
        await slack.start()  # back on the same port
        await wait_for(lambda: all_sent(d), 30)
    (parent,) = slack.parents()
    texts = [m.text for m in slack.thread(parent)]
    joined = "\n".join(texts)
    assert (
        joined.index("Checking dependencies")
        < joined.index("3 packages behind")
        < joined.index("succeeded")
    )
    assert parent.current_text.endswith("succeeded")


async def test_pending_messages_survive_a_daemon_restart(
    project: Project, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "x")
    slack_project(project)
    await slack.stop()
    async with running_daemon(config(project, slack)) as d:
        run = await d.dispatcher.manual("deps", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: len(d.store.outbox(status="pending")) == 6, 5)
    await slack.start()
    # The backlog is read two items at a time while a new run adds items of its own.
    monkeypatch.setattr("daemon.slack.delivery._FETCH", 2)
    async with running_daemon(config(project, slack)) as d:
        second = await d.dispatcher.manual("deps", {}, "test")
        assert second.id is not None
        await wait_status(d, second.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: all_sent(d) and len(d.store.outbox()) == 12, 30)
    first, again = slack.parents()
    assert f"run {run.id} " in first.text and f"run {second.id} " in again.text
    assert "succeeded" in first.current_text and "succeeded" in again.current_text
    assert len(slack.thread(first)) >= 1 and len(slack.thread(again)) >= 1


async def test_rate_limits_are_honoured(
    project: Project, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "x")
    slack_project(project)
    slack.rate_limit("chat.postMessage", retry_after=1)
    async with running_daemon(config(project, slack)) as d:
        run = await d.dispatcher.manual("deps", {}, "test")
        assert run.id is not None
        await wait_for(lambda: all_sent(d), 30)
    posts = [c for c in slack.calls if c[0] == "chat.postMessage"]
    assert len(posts) == len(slack.messages) + 1  # the 429, then the same message again
    assert slack.parents()


async def test_a_message_slack_refuses_for_good_is_recorded_and_shown(
    project: Project,
    slack: SlackDouble,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "x")
    slack_project(project, channel="#nowhere")
    async with running_daemon(config(project, slack)) as d:
        run = await d.dispatcher.manual("deps", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: all_sent(d))
        failed = d.store.outbox(status="failed")
        assert failed[0].kind == "parent" and failed[0].error == "channel_not_found"
        assert all(i.status == "failed" for i in d.store.outbox())
    monkeypatch.chdir(project.root)
    (project.root / "config.yaml").write_text("http: {port: 0}\n")
    assert main(["show", str(run.id)]) == 0
    assert "slack parent to #nowhere: failed: channel_not_found" in capsys.readouterr().out


async def test_chatty_runs_are_coalesced(project: Project, slack: SlackDouble) -> None:
    project.skill(
        "chatty",
        "import json, sys\nsys.stdin.readline()\n"
        "for i in range(60):\n    print(json.dumps({'type': 'message', 'text': f'line {i}'}), flush=True)\n",
    )
    project.automation("chatty", skill="chatty", report={"channel": "#ops"})
    cfg = project.config(
        slack={"bot_token": slack.bot_token, "base_url": slack.base_url, "min_interval": "300ms"}
    )
    async with running_daemon(cfg) as d:
        run = await d.dispatcher.manual("chatty", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: all_sent(d), 30)
    (parent,) = slack.parents()
    replies = slack.thread(parent)
    joined = "\n".join(m.text for m in replies)
    assert all(f"line {i}" in joined for i in range(60))
    assert len(replies) <= 8  # 61 replies coalesced into a few posts


async def test_the_parent_message_shows_links_and_stays_current(
    project: Project, slack: SlackDouble
) -> None:
    project.skill(
        "linker",
        "import json, sys, time\nsys.stdin.readline()\n"
        "print(json.dumps({'type': 'artifact', 'kind': 'link', 'title': 'PR #7', 'url': 'https://git.example/pr/7'}), flush=True)\n"
        "print(json.dumps({'type': 'step', 'title': 'waiting'}), flush=True)\n"
        "sys.stdin.readline()\n",
    )
    project.automation("linker", skill="linker", report={"channel": "#ops"})
    cfg = project.config(
        slack={
            "bot_token": slack.bot_token,
            "base_url": slack.base_url,
            "min_interval": "10ms",
            "refresh": "100ms",
        },
        shutdown_grace="100ms",
    )
    async with running_daemon(cfg) as d:
        run = await d.dispatcher.manual("linker", {}, "test")
        parent = await wait_for(lambda: next(iter(slack.parents()), None))
        await wait_for(lambda: len(parent.updates) >= 3)  # refreshed while the run works
        context = parent.updates[-1]["blocks"][1]["elements"][0]["text"]
        assert "<https://git.example/pr/7|PR #7>" in context and "elapsed" in context
        assert run.id is not None


async def test_an_answer_nobody_foresaw_is_retried_then_recorded_never_fatal(
    project: Project, slack: SlackDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPS_TOKEN", "x")
    slack_project(project)
    # "ok" without the message's ts: twice for the first run's parent (then it gets through),
    # and for good for the second run's.
    slack.answer("chat.postMessage", {"ok": True}, times=2)
    async with running_daemon(config(project, slack)) as d:
        first = await d.dispatcher.manual("deps", {}, "test")
        assert first.id is not None
        await wait_status(d, first.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: ended_and_sent(d, first.id or 0), 30)
        assert {i.status for i in d.store.outbox(first.id)} == {"sent"}
        slack.answer("chat.postMessage", {"ok": True}, times=3)
        second = await d.dispatcher.manual("deps", {}, "test")
        assert second.id is not None
        await wait_status(d, second.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: ended_and_sent(d, second.id or 0), 30)
        parent, *replies = d.store.outbox(second.id)
        assert parent.status == "failed" and parent.error is not None
        assert parent.error.startswith("unexpected: ValueError(")
        assert {r.error for r in replies} == {"parent message was not posted"}
        third = await d.dispatcher.manual("deps", {}, "test")  # delivery goes on
        assert third.id is not None
        await wait_status(d, third.id, RunStatus.SUCCEEDED)
        await wait_for(lambda: ended_and_sent(d, third.id or 0), 30)
        assert {i.status for i in d.store.outbox(third.id)} == {"sent"}
    assert len(slack.parents()) == 2


async def test_a_reply_handed_over_is_posted_once_written_and_in_order(
    slack: SlackDouble, tmp_path: Any
) -> None:
    import asyncio
    from concurrent.futures import Future

    import aiohttp

    from daemon.config import SlackConfig
    from daemon.slack import SlackDelivery, make_client
    from daemon.store import NewRun, OutboxItem, Store

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.create_all()
    run = store.create_run(NewRun("deps", "manual", {}))
    assert run.id is not None
    parent = store.add_outbox(run.id, "#ops", "parent", {"text": "run"}, None)
    async with aiohttp.ClientSession() as http:
        config = SlackConfig(bot_token=slack.bot_token, base_url=slack.base_url)
        delivery = SlackDelivery(store, make_client(config, http), 0.0)
        task = asyncio.create_task(delivery.run())
        try:
            await wait_for(lambda: bool(slack.parents()))  # the backlog: the parent alone
            first, second = (
                store.add_outbox(run.id, "#ops", "reply", {"text": text}, parent.id)
                for text in ("first", "second")
            )
            # Two replies whose writes are still going on: nothing goes out before the first
            # is written, and then both go in their order.
            writing: list[Future[OutboxItem]] = [Future(), Future()]
            for written in writing:
                delivery.enqueue_written(written)
            await asyncio.sleep(0.05)
            assert not slack.thread(slack.parents()[0])
            writing[1].set_result(second)
            delivery.enqueue_written(Future())  # a third, still being written, wakes it
            await asyncio.sleep(0.05)
            assert not slack.thread(slack.parents()[0])  # the first one is not written yet
            await asyncio.to_thread(writing[0].set_result, first)  # as the store thread would
            await wait_for(lambda: len(slack.thread(slack.parents()[0])) >= 1)
        finally:
            task.cancel()
    texts = [m.current_text for m in slack.thread(slack.parents()[0])]
    assert "\n".join(texts) == "first\nsecond"
    store.close()


async def test_a_starting_delivery_leaves_the_items_of_other_live_replicas_runs_to_them(
    slack: SlackDouble, tmp_path: Any
) -> None:
    import asyncio

    import aiohttp

    from daemon.config import SlackConfig
    from daemon.slack import SlackDelivery, make_client
    from daemon.store import NewRun, Store, utcnow

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.create_all()
    for owner, text in (("replica-b", "b's run"), (None, "nobody's run")):
        run = store.create_run(NewRun("deps", "manual", {}))
        assert run.id is not None
        store.start_run(run.id, utcnow(), owner)
        store.add_outbox(run.id, "#ops", "parent", {"text": text}, None)

    async def others() -> set[str]:
        return {"replica-b"}  # alive, and delivering what its runs queued

    async with aiohttp.ClientSession() as http:
        config = SlackConfig(bot_token=slack.bot_token, base_url=slack.base_url)
        delivery = SlackDelivery(store, make_client(config, http), 0.0, others=others)
        task = asyncio.create_task(delivery.run())
        try:
            await wait_for(lambda: bool(slack.parents()))
            await asyncio.sleep(0.2)
        finally:
            task.cancel()
    assert [m.text for m in slack.parents()] == ["nobody's run"]
    assert [o.status for o in store.outbox()] == ["pending", "sent"]
    store.close()


WAITS_FOR_WORD = """\
import json, sys
sys.stdin.readline()
def emit(**e): print(json.dumps(e), flush=True)
emit(type="step", title="first step")
word = json.loads(sys.stdin.readline())["text"]
emit(type="step", title="heard " + word)
emit(type="finished", status="succeeded", summary="done")
"""


async def test_a_reply_posted_but_not_recorded_before_a_stop_is_not_posted_twice(
    project: Project, slack: SlackDouble
) -> None:
    project.skill("listens", WAITS_FOR_WORD)
    project.automation("listens", skill="listens", report={"channel": "#ops"})
    async with running_daemon(config(project, slack)) as d:
        run = await d.dispatcher.manual("listens", {}, "test")
        run_id = run.id or 0
        await wait_for(lambda: any("first step" in m.text for m in slack.messages), 10)
        # Slack takes the next post and never answers: the daemon stops not knowing.
        slack.stall("chat.postMessage")
        await d.executor.steer(run_id, "go", "test")
        await wait_for(lambda: any("steering from test: go" in m.text for m in slack.messages))
        await wait_status(d, run_id, RunStatus.SUCCEEDED)
        assert any(i.status == "pending" for i in d.store.outbox(run_id))
    async with running_daemon(config(project, slack)) as d:
        await wait_for(lambda: all_sent(d), 30)
        (parent,) = slack.parents()
        thread = "\n".join(m.text for m in slack.thread(parent))
        # The stalled reply was found in the thread, not posted again.
        assert thread.count("steering from test: go") == 1, thread
        assert thread.count("heard go") == 1 and thread.endswith("*succeeded*: done")
        assert parent.current_text.endswith("succeeded")


async def test_a_runs_first_message_posted_but_not_recorded_is_not_posted_twice(
    project: Project, slack: SlackDouble
) -> None:
    project.skill("listens", WAITS_FOR_WORD)
    project.automation("listens", skill="listens", report={"channel": "#ops"})
    async with running_daemon(config(project, slack)) as d:
        first = await d.dispatcher.manual("listens", {}, "test")
        await wait_for(lambda: any("first step" in m.text for m in slack.messages), 10)
        await d.executor.steer(first.id or 0, "on", "test")
        await wait_status(d, first.id or 0, RunStatus.SUCCEEDED)
        # Every message of the first run is out (its end too, queued after its state).
        await wait_for(lambda: ended_and_sent(d, first.id or 0) and parent_says(slack, "succeeded"))
        # Slack takes the next run's first message and never answers.
        slack.stall("chat.postMessage")
        second = await d.dispatcher.manual("listens", {}, "test")
        await wait_for(lambda: len(slack.parents()) == 2, 10)
        await d.executor.steer(second.id or 0, "go", "test")
        await wait_status(d, second.id or 0, RunStatus.SUCCEEDED)
    async with running_daemon(config(project, slack)) as d:
        await wait_for(lambda: all_sent(d), 30)
        parents = slack.parents()
        assert len(parents) == 2, [p.text for p in parents]  # one thread a run
        texts = [m.text for m in slack.thread(parents[1])]
        assert any("heard go" in t for t in texts) and "*succeeded*: done" in texts[-1]
        assert parents[1].current_text.endswith("succeeded")
