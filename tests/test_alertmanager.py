"""Alertmanager: one event per alert, one run per firing alert, the resolve reaches that run.

The second test drives the real Prometheus Alertmanager (Debian package, started here on
loopback): it fires, repeats, retries after a 5xx, and resolves an alert.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from daemon.app import Daemon
from daemon.http import free_port, serve_in_background, stop
from daemon.testing import Project, running_daemon, wait_for

from .helpers import events

TOKEN = "am-test-token-123"


def notification(
    status: str, fingerprint: str = "7d2d332feada5c59", **labels: str
) -> dict[str, Any]:
    labels = {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical", **labels}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "5xx > 5%"},
        "startsAt": "2026-11-24T13:56:11Z",
        "endsAt": "2026-11-24T14:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }
    return {
        "receiver": "daemon",
        "status": status,
        "alerts": [alert],
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
    }


def alert_project(project: Project) -> None:
    project.skill("investigate", "print()", inputs={"alert": {"type": "string", "required": True}})
    project.automation(
        "investigate",
        skill="investigate",
        triggers=[
            {
                "type": "alertmanager",
                "matchers": ['service=~"check.*"', 'env!="staging"'],
                "severity": ["critical", "warning"],
            }
        ],
        inputs={"alert": "{{ event.payload.alert.labels.alertname }}"},
    )


@contextlib.asynccontextmanager
async def am_daemon(project: Project, **http: Any) -> AsyncIterator[Daemon]:
    alert_project(project)
    config = project.config(sources={"alertmanager": {"token": TOKEN}}, http={"port": 0, **http})
    async with running_daemon(config) as d:
        yield d


async def test_firing_repeat_resolve(project: Project) -> None:
    async with am_daemon(project) as d:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}", headers=auth) as c:
            first = await c.post("/hooks/alertmanager", json=notification("firing"))
            assert first.status_code == 202
            (run_id,) = first.json()["events"][0]["runs"]
            run = d.store.get_run(run_id)
            assert (run.automation, run.inputs) == ("investigate", {"alert": "HighErrorRate"})
            repeat = await c.post("/hooks/alertmanager", json=notification("firing"))
            assert repeat.status_code == 200 and repeat.json()["events"][0]["duplicate"]
            staging = await c.post(
                "/hooks/alertmanager", json=notification("firing", "aa", env="staging")
            )
            event_id = staging.json()["events"][0]["event_id"]
            found = d.store.get_event(event_id)
            assert found is not None
            assert found[1][0].detail == 'matcher env!="staging" does not match'
            resolved = await c.post("/hooks/alertmanager", json=notification("resolved"))
            assert resolved.json()["events"][0]["runs"] == []
            log = await wait_for(
                lambda: [e for e in d.store.run_events(run_id) if e.type == "message"]
            )
            assert log[0].data["text"] == "resolved: HighErrorRate ended at 2026-11-24T14:10:00Z"
            found = d.store.get_event(resolved.json()["events"][0]["event_id"])
            assert found is not None
            assert [(x.decision, x.run_id) for x in found[1]] == [
                ("filtered", None),
                ("resolved", run_id),
            ]
            wrong = await c.post(
                "/hooks/alertmanager",
                json=notification("firing"),
                headers={"Authorization": "Bearer no"},
            )
            assert wrong.status_code == 401
        assert len(d.store.list_runs()) == 1


# -- the real Alertmanager -----------------------------------------------------------------
@pytest.fixture
def alertmanager_bin() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        pytest.fail("Prometheus Alertmanager is not installed: run scripts/ensure-test-tools")
    return found


@contextlib.contextmanager
def run_alertmanager(binary: str, tmp: Path, webhook: str) -> Iterator[str]:
    port = free_port()
    config = tmp / "am.yml"
    config.write_text(
        f"""\
route: {{receiver: daemon, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 2s}}
receivers:
  - name: daemon
    webhook_configs:
      - url: {webhook}
        send_resolved: true
        http_config: {{authorization: {{type: Bearer, credentials: {TOKEN}}}}}
"""
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "am.log").open("wb"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_real_alertmanager_fires_repeats_retries_and_resolves_one_run(
    project: Project, tmp_path: Path, alertmanager_bin: str
) -> None:
    seen: list[int] = []  # status the daemon gave each notification

    async with am_daemon(project) as d:
        target = f"http://127.0.0.1:{d.http_port}/hooks/alertmanager"

        async def proxy(request: Request) -> Response:
            # Forward to the daemon, but tell Alertmanager the first delivery failed: it will
            # retry a notification the daemon has already stored.
            async with httpx.AsyncClient() as c:
                resp = await c.post(
                    target, content=await request.body(), headers=dict(request.headers)
                )
            seen.append(resp.status_code)
            return Response(status_code=500 if len(seen) == 1 else resp.status_code)

        proxy_port = free_port()
        proxy_task = await serve_in_background(
            Starlette(routes=[Route("/", proxy, methods=["POST"])]), proxy_port
        )
        try:
            with run_alertmanager(
                alertmanager_bin, tmp_path, f"http://127.0.0.1:{proxy_port}/"
            ) as am:
                async with httpx.AsyncClient(base_url=am) as c:
                    await wait_for(lambda: _ready(am), 15)
                    labels = {
                        "alertname": "HighErrorRate",
                        "service": "checkout",
                        "severity": "critical",
                    }
                    resp = await c.post(
                        "/api/v2/alerts",
                        json=[{"labels": labels, "annotations": {"summary": "5xx"}}],
                    )
                    assert resp.status_code == 200
                    # First delivery stored then "failed", the retry is a duplicate, repeats too.
                    await wait_for(lambda: len(seen) >= 3, 30)
                    assert seen[0] == 202 and set(seen[1:]) == {200}
                    runs = d.store.list_runs()
                    assert len(runs) == 1 and runs[0].automation == "investigate"
                    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
                    await c.post("/api/v2/alerts", json=[{"labels": labels, "endsAt": past}])
                    run_id = runs[0].id
                    assert run_id is not None
                    msg = await wait_for(
                        lambda: [e for e in d.store.run_events(run_id) if e.type == "message"], 30
                    )
                    assert msg[0].data["text"].startswith("resolved: HighErrorRate ended at ")
            assert len(d.store.list_runs()) == 1
            kinds = [e["type"] for e in await events(d, run_id)]
            assert "finished" in kinds
        finally:
            await stop(proxy_task)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
