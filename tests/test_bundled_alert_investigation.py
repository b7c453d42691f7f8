"""The bundled alert-investigation automation end to end: an Alertmanager notification, the
Prometheus API double (range query and runbook), the GitHub double's deploys and merged pull
requests, the scripted model steered from the on-call thread, an approved remediation, and the
resolve reported in the same thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from daemon.app import Daemon
from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon, wait_for
from daemon.testing.github import GitHubDouble
from daemon.testing.models import ChatCompletionsDouble, call, say
from daemon.testing.prometheus import PrometheusDouble
from daemon.testing.slack import SlackDouble

from .bundled import AM_TOKEN, ANN, config, install
from .helpers import events, wait_event, wait_status
from .test_bundled_issue_triage import final_text, no_secret_leaked
from .test_slack_replies import approval_message, parent_of

REPO = "acme/checkout"
QUERY = 'histogram_quantile(0.99, rate(http_duration_seconds_bucket{service="checkout"}[5m]))'


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def notification(prom: PrometheusDouble, status: str, starts: datetime) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "CheckoutLatency", "service": "checkout", "severity": "critical"},
        "annotations": {
            "summary": "p99 latency above 2s",
            "runbook_url": f"{prom.base_url}/runbooks/checkout-latency",
        },
        "startsAt": iso(starts),
        "endsAt": iso(starts + timedelta(minutes=30)) if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"{prom.base_url}/graph?g0.expr={quote(QUERY)}&g0.tab=1",
        "fingerprint": "c0ffee0123456789",
    }  # fmt: skip
    return {
        "receiver": "nightshift",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": "CheckoutLatency"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutLatency"}',
        "truncatedAlerts": 0,
    }


async def notify(d: Daemon, payload: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
        resp = await client.post(
            "/hooks/alertmanager", json=payload, headers={"Authorization": f"Bearer {AM_TOKEN}"}
        )
    assert resp.is_success, resp.text


@pytest.fixture
async def prom() -> AsyncIterator[PrometheusDouble]:
    async with PrometheusDouble() as double:
        yield double


async def test_alert_investigated_steered_remediated_and_resolved(
    project: Project, slack: SlackDouble, gh: GitHubDouble, prom: PrometheusDouble, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    starts = now - timedelta(minutes=10)
    repo = gh.repo(REPO)
    repo.deployment("abc1234def", created_at=iso(now - timedelta(minutes=40)))
    repo.pull("orders-index", title="Add orders index migration", state="closed",
              merged_at=iso(now - timedelta(minutes=15)))  # fmt: skip
    prom.series[QUERY] = [
        ({"instance": "web-1"}, lambda t: 0.3 if t < starts.timestamp() else 2.6),
        ({"instance": "web-2"}, lambda t: 0.3),
    ]
    prom.pages["/runbooks/checkout-latency"] = "1. Check the database for slow queries."
    steered = asyncio.Event()

    async def model(request: dict[str, Any], n: int) -> dict[str, Any]:
        said = " ".join(str(m.get("content")) for m in request["messages"])
        if n == 1:
            assert "max 2.6" in said and "Add orders index migration" in said
            assert "Check the database for slow queries" in said  # the runbook was read
            await steered.wait()
            return call("post_update", text="lining up the changes with the latency")
        cause = (
            "merged #1 Add orders index migration locks the orders table"
            if "database" in said
            else "deploy abc1234"
        )
        answer = {
            "cause": cause,
            "confidence": "medium",
            "evidence": ["p99 on web-1 rose from 0.3s to 2.6s at the alert's start"],
            "next_steps": ["check pg_stat_activity for locks"],
            "remediate": True,
            "why": "a restart clears the stuck connections",
        }
        return say(json.dumps(answer))

    marker = tmp_path / "restarted-checkout"
    async with ChatCompletionsDouble(model) as llm:
        install(
            project,
            "alert-investigation",
            agent={
                "delegate": {"base_url": llm.base_url, "api_key": None, "retry_backoff": "10ms"}
            },
            inputs={"repository": REPO, "remediation": f"touch {tmp_path}/restarted-{{service}}"},
        )
        async with running_daemon(config(project, slack, gh)) as d:
            await wait_for(lambda: slack.sockets)
            await notify(d, notification(prom, "firing", starts))
            run_id = (await wait_for(lambda: d.store.list_runs(limit=1)))[0].id
            assert run_id is not None
            parent = await parent_of(slack, run_id)
            await wait_for(lambda: llm.requests, 20)
            await slack.reply(parent, ANN, "look at the database first, the runbook says so")
            await wait_event(d, run_id, "steer_received")
            steered.set()
            request = await approval_message(slack, parent)
            assert f"touch {tmp_path}/restarted-checkout" in request.text
            posted = "\n".join(m.text for m in slack.thread(parent))
            assert "likely cause: merged #1 Add orders index migration" in posted
            assert not marker.exists()
            await slack.click(request, ANN, "approve")
            done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=30)
            assert marker.exists()
            await notify(d, notification(prom, "resolved", starts))
            await wait_for(
                lambda: any("resolved: CheckoutLatency" in m.text for m in slack.thread(parent))
            )
            await wait_for(lambda: "remediated" in final_text(parent))
            await no_secret_leaked(d, slack, run_id)
    assert done.summary.endswith("locks the orders table; remediated")
    assert prom.queries[0]["query"] == QUERY


async def test_without_a_model_the_closest_change_is_named_and_a_deny_is_respected(
    project: Project, slack: SlackDouble, gh: GitHubDouble, prom: PrometheusDouble, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    repo = gh.repo(REPO)
    repo.deployment("abc1234def", created_at=iso(now - timedelta(minutes=40)))
    # No series for the query: Prometheus answers bad_data and the report says so.
    install(
        project,
        "alert-investigation",
        agent={"delegate": None},
        inputs={"repository": REPO, "remediation": f"touch {tmp_path}/restarted-{{service}}"},
    )
    async with running_daemon(config(project, slack, gh)) as d:
        await wait_for(lambda: slack.sockets)
        await notify(d, notification(prom, "firing", now - timedelta(minutes=10)))
        run_id = (await wait_for(lambda: d.store.list_runs(limit=1)))[0].id
        assert run_id is not None
        parent = await parent_of(slack, run_id)
        await approval_message(slack, parent)
        await slack.reply(parent, ANN, "deny the deploy is fine, it is the provider")
        done = await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=30)
        logged = await events(d, run_id)
    assert "deploy abc1234 to production" in done.summary
    assert done.summary.endswith("not remediated (the deploy is fine, it is the provider)")
    assert not (tmp_path / "restarted-checkout").exists()
    report = next(e for e in logged if e["type"] == "artifact")
    assert "(query failed: Prometheus refused" in report["content"]
