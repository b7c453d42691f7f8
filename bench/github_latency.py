"""GitHub conversations:
- a mention's webhook received → 👀 posted on the comment: p99 ≤ 300 ms;
- a mention while the conversation's run is active → the steering read by the agent:
  p99 ≤ 300 ms.
Both against the GitHub double's bare round trip (the collaborator-permission API, from the
same process) in the same run. The daemon runs in this process, the double too, on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import tempfile
import time
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import httpx

from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.github import GitHubDouble

from ._util import Result, percentile

N = 100
REPO = "octo/bench"
SECRET = "bench-secret"  # noqa: S105 - the webhook secret of a throwaway daemon
ECHO = """\
import json, sys, time
sys.stdin.readline()
print(json.dumps({"type": "step", "title": "listening"}), flush=True)
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("type") == "steer":
        print(json.dumps({"type": "message", "text": f"{msg['text']} {time.time()}"}), flush=True)
"""


class _Timed(list[tuple[str, int, str]]):
    """The double's reactions, each with the wall-clock moment it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[int, float] = {}

    def append(self, item: tuple[str, int, str]) -> None:
        self.at[item[1]] = time.time()
        super().append(item)


def _comment(number: int, comment_id: int, body: str) -> dict[str, Any]:
    user = {"login": "octocat", "type": "User"}
    return {
        "action": "created",
        "issue": {"number": number, "title": "bench", "user": user},
        "comment": {"id": comment_id, "body": body, "user": user},
        "repository": {"full_name": REPO},
        "sender": user,
    }


async def _deliver(client: httpx.AsyncClient, data: dict[str, Any]) -> None:
    raw = json.dumps(data).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }
    response = await client.post("/hooks/github", content=raw, headers=headers)
    assert response.status_code == 202, response.text


async def run() -> list[Result]:
    async with GitHubDouble(token="ghp_bench") as gh:  # noqa: S106 - the double's own token
        repo = gh.repo(REPO)
        for _ in range(N + 1):
            repo.issue("bench")
        repo.permissions["octocat"] = "admin"
        timed = _Timed()
        repo.reactions = timed
        with tempfile.TemporaryDirectory() as tmp:
            project = Project(Path(tmp) / "p")
            project.skill("echo", ECHO)
            project.automation(
                "mention",
                skill="echo",
                triggers=[{"type": "github_mention"}],
                policies={"concurrency": {"max_instances": N + 1}},
            )
            config = project.config(
                sources={"github": {"secret": SECRET}},
                github={"token": "ghp_bench", "api_url": gh.base_url, "write_interval": 0},
                concurrency={"max_runs": N + 1},
                logging={"level": "warning"},
            )
            async with (
                running_daemon(config, console=StringIO()) as d,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client,
                httpx.AsyncClient(base_url=gh.base_url) as bare,
            ):
                baseline = []
                for _ in range(N):
                    t0 = time.perf_counter()
                    await bare.get(f"/repos/{REPO}/collaborators/octocat/permission")
                    baseline.append((time.perf_counter() - t0) * 1000)
                # 👀: a mention in each of N conversations.
                eyes = []
                for n in range(1, N + 1):
                    sent = time.time()
                    await _deliver(client, _comment(n, 10_000 + n, "@nightshift look"))
                    await wait_for(lambda n=n: 10_000 + n in timed.at, 10, 0.001)  # type: ignore[misc]
                    eyes.append((timed.at[10_000 + n] - sent) * 1000)
                # Steering: N mentions in one conversation while its run listens.
                home = N + 1
                await _deliver(client, _comment(home, 20_000, "@nightshift start"))
                runs = await wait_for(
                    lambda: [r for r in d.store.list_runs(limit=500) if r.key == f"{REPO}#{home}"]
                )
                run_id = runs[0].id or 0
                steer = []
                with d.bus.subscribe(run_id) as sub:
                    while True:  # listening
                        env = await asyncio.wait_for(sub.queue.get(), 10)
                        if env.event.type == "step":
                            break
                    for i in range(N):
                        sent = time.time()
                        await _deliver(client, _comment(home, 20_001 + i, f"@nightshift steer-{i}"))
                        while True:
                            env = await asyncio.wait_for(sub.queue.get(), 10)
                            text = getattr(env.event, "text", "")
                            if env.event.type == "message" and text.startswith(f"steer-{i} "):
                                break
                        steer.append((float(text.split()[-1]) - sent) * 1000)
                for run in await d.store.call(d.store.list_runs, limit=500):
                    if run.id is not None and run.id in d.executor.active_ids:
                        await d.executor.cancel(run.id, "bench")
    base = percentile(baseline, 99)
    return [
        Result(
            "GitHub mention received → 👀 posted, p99",
            percentile(eyes, 99),
            "ms",
            "GitHub double round trip, p99",
            base,
            "≤ 300 ms",
            percentile(eyes, 99) <= 300,
        ),
        Result(
            "GitHub mention while running → steering at the agent, p99",
            percentile(steer, 99),
            "ms",
            "GitHub double round trip, p99",
            base,
            "≤ 300 ms",
            percentile(steer, 99) <= 300,
        ),
    ]


def main() -> list[Result]:
    return asyncio.run(run())
