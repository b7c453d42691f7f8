"""Slack:
- a thread reply → the steering message delivered to the running backend: p99 ≤ 300 ms;
- run started → its parent message posted: p99 ≤ 100 ms.
Each is reported against the Slack double's bare round trip in the same run: a Socket Mode
envelope and its ack, and a `chat.postMessage` through the same slack-sdk client.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from io import StringIO
from pathlib import Path

from daemon.config import SlackConfig
from daemon.slack import make_client
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.slack import Posted, SlackDouble

from ._util import Result, percentile

N = 100
# A backend that reports, for every steering line, the wall-clock moment it read it.
ECHO = """\
import json, sys, time
sys.stdin.readline()
print(json.dumps({"type": "step", "title": "listening"}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") == "steer":
        print(json.dumps({"type": "message", "text": f"{msg['text']} {time.time()}"}), flush=True)
        if msg["text"].startswith("done"):
            break
"""


def posted_parent(slack: SlackDouble, run_id: int | None) -> Posted | None:
    """The parent message of run `run_id` in #deps, once the double has it."""
    return next((m for m in slack.parents("C0DEPS") if f"run {run_id} " in m.text), None)


async def run() -> list[Result]:
    async with SlackDouble() as slack:
        with tempfile.TemporaryDirectory() as tmp:
            project = Project(Path(tmp) / "p")
            project.skill("echo", ECHO)
            project.skill("quick", "import sys\nsys.stdin.readline()\n")
            report = {"channel": "#ops", "steerers": ["U0ANN"]}
            project.automation("echo", skill="echo", report=report)
            project.automation(
                "quick",
                skill="quick",
                report={"channel": "#deps"},
                policies={"concurrency": {"max_instances": 10}},
            )
            config = project.config(
                slack={
                    "bot_token": slack.bot_token,
                    "app_token": slack.app_token,
                    "base_url": slack.base_url,
                    "min_interval": "50ms",
                },
                logging={"level": "warning"},
            )
            async with running_daemon(config, console=StringIO()) as d:
                await wait_for(lambda: slack.sockets)
                # Baselines: an envelope's ack, and chat.postMessage through the same client.
                acks = []
                for i in range(N):
                    t0 = time.perf_counter()
                    await slack.envelope(
                        "events_api",
                        {
                            "type": "event_callback",
                            "event_id": f"b{i}",
                            "event": {"type": "reaction_added"},
                        },
                    )
                    acks.append((time.perf_counter() - t0) * 1000)
                client = make_client(
                    SlackConfig(bot_token=slack.bot_token, base_url=slack.base_url)
                )
                posts = []
                for _ in range(N):
                    t0 = time.perf_counter()
                    await client.chat_postMessage(channel="#deps", text="baseline", thread_ts="0.1")
                    posts.append((time.perf_counter() - t0) * 1000)

                # Steering: reply in the thread, time until the backend has read it.
                run = await d.dispatcher.manual("echo", {}, "bench")
                parent = await wait_for(lambda: next((m for m in slack.parents("C0OPS")), None))
                assert parent is not None
                await wait_for(lambda: any("listening" in m.text for m in slack.thread(parent)))
                steer_ms = []
                with d.bus.subscribe(run.id) as sub:
                    for i in range(N):
                        sent = time.time()
                        await slack.reply(parent, "U0ANN", f"steer-{i}")
                        while True:
                            env = await asyncio.wait_for(sub.queue.get(), 10)
                            text = getattr(env.event, "text", "")
                            if env.event.type == "message" and text.startswith(f"steer-{i} "):
                                break
                        steer_ms.append((float(text.split()[-1]) - sent) * 1000)
                await slack.reply(parent, "U0ANN", "done")

                # Run started → parent posted.
                started: dict[int, float] = {}
                d.executor.on_started(lambda run_id: started.__setitem__(run_id, time.time()))
                parent_ms = []
                for _ in range(N):
                    quick = await d.dispatcher.manual("quick", {}, "bench")
                    msg = await wait_for(
                        functools.partial(posted_parent, slack, quick.id), 10, 0.001
                    )
                    assert msg is not None
                    parent_ms.append((msg.received_at - started[quick.id or 0]) * 1000)
                    await asyncio.sleep(0.06)  # let the channel's pacing interval pass
    steer_p99, parent_p99 = percentile(steer_ms, 99), percentile(parent_ms, 99)
    return [
        Result(
            "Slack reply → steering at the backend, p99",
            steer_p99,
            "ms",
            "envelope → ack round trip, p99",
            percentile(acks, 99),
            "≤ 300 ms",
            steer_p99 <= 300,
        ),
        Result(
            "run started → parent message posted, p99",
            parent_p99,
            "ms",
            "chat.postMessage round trip, p99",
            percentile(posts, 99),
            "≤ 100 ms",
            parent_p99 <= 100,
        ),
    ]


def main() -> list[Result]:
    return asyncio.run(run())
