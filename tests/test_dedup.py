"""Dedup windows, throttles and the active-run policy, with frozen time."""

from __future__ import annotations

from typing import Any

import pytest
from freezegun import freeze_time

from daemon.app import Daemon
from daemon.errors import NightshiftError
from daemon.runs import RunStatus
from daemon.sources.incoming import Incoming
from daemon.testing import Project, running_daemon

from .helpers import wait_status

GATED = """\
import json, sys, time, pathlib
ctx = json.loads(sys.stdin.readline())
gate = pathlib.Path(ctx["workdir"]).parent.parent / "gate"
while not gate.exists():
    time.sleep(0.01)
"""


def hook(n: int, issue: int) -> Incoming:
    return Incoming(
        "webhook",
        "issues",
        {"issue": issue},
        key=f"delivery-{n}",
        meta={"webhook": {"name": "issues", "delivery": str(n)}},
    )


def setup(project: Project, **policies: Any) -> None:
    project.skill("work", GATED)
    project.automation(
        "triage",
        skill="work",
        triggers=[{"type": "webhook", "source": "issues"}],
        policies={
            "dedup_key": "{{ event.payload.issue }}",
            "concurrency": {"max_instances": 10},
            **policies,
        },
    )


async def decide(d: Daemon, n: int, issue: int) -> str:
    routed = await d.dispatcher.route(hook(n, issue))
    assert routed.event_id is not None
    found = d.store.get_event(routed.event_id)
    assert found is not None
    (decision,) = found[1]
    return decision.decision + (f": {decision.detail}" if decision.detail else "")


async def test_same_key_within_the_window_is_deduplicated(project: Project) -> None:
    setup(project, dedup_window="1h")
    with freeze_time("2026-11-24 10:00:00", real_asyncio=True) as frozen:
        async with running_daemon(project.config()) as d:
            assert await decide(d, 1, 7) == "matched"
            assert await decide(d, 2, 7) == "deduplicated: key '7' started run 1 within the window"
            assert await decide(d, 3, 8) == "matched"  # another issue is another thing
            frozen.move_to("2026-11-24 11:00:01")
            assert await decide(d, 4, 7) == "matched"
            (project.root / ".nightshift" / "gate").touch()


async def test_throttle_counts_runs_per_key_per_window(project: Project) -> None:
    setup(project, throttle="2 per 1h")
    with freeze_time("2026-11-24 10:00:00", real_asyncio=True) as frozen:
        async with running_daemon(project.config()) as d:
            assert await decide(d, 1, 7) == "matched"
            frozen.move_to("2026-11-24 10:20:00")
            assert await decide(d, 2, 7) == "matched"
            assert await decide(d, 3, 7) == "throttled: 2 runs for key '7' in the last 1h"
            assert await decide(d, 4, 9) == "matched"
            frozen.move_to("2026-11-24 11:00:30")  # the first run left the window
            assert await decide(d, 5, 7) == "matched"
            (project.root / ".nightshift" / "gate").touch()


@pytest.mark.parametrize("policy", ["leave", "supersede", "queue"])
async def test_a_run_still_active_for_the_key(project: Project, policy: str) -> None:
    setup(project, on_active=policy)
    async with running_daemon(project.config()) as d:
        assert await decide(d, 1, 7) == "matched"
        await wait_status(d, 1, RunStatus.RUNNING)
        second = await decide(d, 2, 7)
        if policy == "leave":
            assert second == "deduplicated: run 1 for key '7' is still active"
            assert len(d.store.list_runs()) == 1
        elif policy == "supersede":
            assert second == "matched"
            old = await wait_status(d, 1, RunStatus.CANCELLED)
            assert old.summary == "cancelled by nightshift"
            await wait_status(d, 2, RunStatus.RUNNING)
        else:
            assert second == "matched"
            await wait_status(d, 2, RunStatus.RUNNING)
            assert d.store.get_run(1).status == "running"
        (project.root / ".nightshift" / "gate").touch()


async def test_the_cost_cap_holds_events_and_a_persons_trigger_alike(project: Project) -> None:
    setup(project, cost_cap="$2 per 1d", dedup_key="{{ event.payload.get('issue', 'by hand') }}")
    with freeze_time("2026-11-24 10:00:00", real_asyncio=True) as frozen:
        async with running_daemon(project.config()) as d:
            assert await decide(d, 1, 7) == "matched"
            await d.store.call(d.store.add_usage, 1, 90_000, 2.5)  # what its agent reported
            capped = "runs for key '7' cost $2.50 in the last 1d, the cap is $2.00"
            assert await decide(d, 2, 7) == f"throttled: {capped} (policies.cost_cap)"
            assert await decide(d, 3, 9) == "matched"  # another key spends its own
            by_hand = await d.dispatcher.manual("triage", {}, "cli")
            await d.store.call(d.store.add_usage, by_hand.id, 1, 2.0)
            with pytest.raises(
                NightshiftError, match=r"^triage: runs for key 'by hand' cost \$2.00"
            ):
                await d.dispatcher.manual("triage", {}, "cli")
            frozen.move_to("2026-11-25 10:00:01")  # the day that run cost has passed
            assert await decide(d, 4, 7) == "matched"
            (project.root / ".nightshift" / "gate").touch()
