"""The test seams: doubles that run in-process through an httpx `transport=`, and a capture
of a daemon's run events. The wire-level doubles stay for the end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from daemon.agents import BuiltinBackend, default_backends
from daemon.github import GitHubClient
from daemon.runs import RunStatus
from daemon.testing import Project, capture_events, running_daemon
from daemon.testing.models import ChatCompletionsDouble, call, tool_results

from .helpers import BUGGY, wait_status


async def test_the_model_loop_runs_against_an_in_process_double(
    project: Project, repo: Path
) -> None:
    def script(req: dict[str, Any], n: int) -> Any:
        return [call("read_file", path="calc.py"), call("finish", summary="read it")][n - 1]

    model = ChatCompletionsDouble(script)  # never served: no port, no `async with`
    project.skill("read", None, body="Read the notes.")
    project.automation(
        "read",
        skill="read",
        workspace={"repository": str(repo)},
        # Nothing listens here: every request reaches the double through its transport.
        agent={"backend": "builtin", "base_url": "http://model.invalid/v1", "model": "m"},
    )
    config = project.config()
    backends = default_backends(config.state_dir)
    backends["builtin"] = BuiltinBackend(transport=model.transport())
    async with running_daemon(config, backends=backends) as d:
        with capture_events(d.bus) as captured:
            run = await d.dispatcher.manual("read", {}, "test")
            assert run.id is not None
            done = await wait_status(d, run.id, RunStatus.SUCCEEDED)
    assert done.summary == "read it"
    assert len(model.requests) == 2 and tool_results(model.requests[1]) == [BUGGY]
    assert captured.types[0] == "started" and captured.types[-1] == "finished"
    assert {env.run_id for env in captured.envelopes} == {run.id}
    assert [env.seq for env in captured.envelopes] == list(range(1, len(captured.types) + 1))


def test_the_github_client_talks_to_a_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:  # a secondary rate limit first, as GitHub sends it
            return httpx.Response(403, headers={"retry-after": "2"}, json={"message": "slow"})
        return httpx.Response(200, json={"number": 7, "title": "flaky", "state": "open"})

    waits: list[float] = []
    client = GitHubClient(
        "ghp_" + "x" * 36,
        "https://github.example/api/v3",
        transport=httpx.MockTransport(github),
        sleep=waits.append,
    )
    issue = client.get("/repos/o/r/issues/7")
    assert issue["title"] == "flaky" and waits == [2.0]
    assert [r.url.path for r in seen] == ["/api/v3/repos/o/r/issues/7"] * 2
    assert seen[0].headers["authorization"] == "Bearer " + "ghp_" + "x" * 36


async def test_a_capture_sees_only_its_run_and_only_while_open(project: Project) -> None:
    project.skill(
        "say",
        "import json\nprint(json.dumps({'type': 'finished', 'status': 'succeeded', "
        "'summary': 'said'}))\n",
    )
    project.automation("say", skill="say")
    async with running_daemon(project.config()) as d:
        first = await d.dispatcher.manual("say", {}, "test")
        assert first.id is not None
        await wait_status(d, first.id, RunStatus.SUCCEEDED)
        with capture_events(d.bus, run_id=first.id + 1) as captured:
            second = await d.dispatcher.manual("say", {}, "test")
            assert second.id == first.id + 1
            await wait_status(d, second.id, RunStatus.SUCCEEDED)
        third = await d.dispatcher.manual("say", {}, "test")
        assert third.id is not None
        await wait_status(d, third.id, RunStatus.SUCCEEDED)
    assert captured.types == ["started", "finished"]
    assert {env.run_id for env in captured.envelopes} == {second.id}
    assert json.loads(captured.envelopes[-1].model_dump_json())["event"]["summary"] == "said"
