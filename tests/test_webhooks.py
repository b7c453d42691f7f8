"""Webhook intake over real HTTP: GitHub (octokit example payloads, signed like GitHub signs
them), generic webhooks, health and metrics. Nothing refused is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text as sql

from daemon.app import Daemon
from daemon.sources.github import WebhookRefused, verify_signature
from daemon.sources.incoming import stored_text
from daemon.testing import Project, running_daemon

FIXTURES = Path(__file__).parent / "fixtures" / "github"
SECRET = "It's a Secret to Everybody"


def payload(name: str, **patch: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    for dotted, value in patch.items():
        *path, last = dotted.split("__")
        cur = data
        for part in path:
            cur = cur[part]
        cur[last] = value
    return data


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_matches_githubs_published_test_vector() -> None:
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify_signature(SECRET, b"Hello, World!", header)
    with pytest.raises(WebhookRefused):
        verify_signature(SECRET, b"Hello, World?", header)


@pytest.fixture
async def gh(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    monkeypatch.setenv("GH_HOOK_SECRET", SECRET)
    project.skill("noop", "print()")
    project.automation(
        "triage",
        skill="noop",
        triggers=[
            {"type": "github", "events": ["issues"], "actions": ["opened"], "labels": ["bug"]}
        ],
    )
    project.automation(
        "ci-fix",
        skill="noop",
        triggers=[
            {
                "type": "github",
                "events": ["workflow_run"],
                "actions": ["completed"],
                "conclusions": ["failure"],
            }
        ],
    )
    project.automation(
        "review",
        skill="noop",
        triggers=[
            {
                "type": "github",
                "events": ["pull_request"],
                "branches": ["master"],
                "repositories": ["Codertocat/*"],
            }
        ],
    )
    config = project.config(
        sources={"github": {"secret": "${GH_HOOK_SECRET}", "bot_login": "nightshift-bot"}},
        http={"port": 0, "max_body_bytes": 64 * 1024},
    )
    async with running_daemon(config) as d:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
            yield d, client


async def deliver(
    client: httpx.AsyncClient,
    event: str,
    data: dict[str, Any],
    *,
    delivery: str | None = None,
    secret: str = SECRET,
    body: bytes | None = None,
    form: bool = False,
) -> httpx.Response:
    raw = body if body is not None else json.dumps(data).encode()
    content_type = "application/json"
    if form:
        raw = urlencode({"payload": raw.decode()}).encode()
        content_type = "application/x-www-form-urlencoded"
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(raw, secret),
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    return await client.post("/hooks/github", content=raw, headers=headers)


def decisions(d: Daemon, event_id: int) -> dict[str, str]:
    found = d.store.get_event(event_id)
    assert found is not None
    return {x.automation: x.decision + (f": {x.detail}" if x.detail else "") for x in found[1]}


async def test_each_delivery_starts_the_right_automation_exactly_once(
    gh: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = gh
    resp = await deliver(client, "issues", payload("issues.opened"), delivery="d-1")
    assert resp.status_code == 202
    (accepted,) = resp.json()["events"]
    assert len(accepted["runs"]) == 1
    assert d.store.get_run(accepted["runs"][0]).automation == "triage"
    assert decisions(d, accepted["event_id"]) == {
        "triage": "matched",
        "ci-fix": "filtered: event issues not in ['workflow_run']",
        "review": "filtered: event issues not in ['pull_request']",
    }
    again = await deliver(client, "issues", payload("issues.opened"), delivery="d-1")
    assert again.status_code == 200 and again.json()["events"][0]["duplicate"] is True
    assert len(d.store.list_runs(automation="triage")) == 1

    failed = payload("workflow_run.completed", workflow_run__conclusion="failure")
    resp = await deliver(client, "workflow_run", failed)
    run = d.store.get_run(resp.json()["events"][0]["runs"][0])
    assert (run.automation, run.trigger) == ("ci-fix", "github:github-0")
    ok = await deliver(client, "workflow_run", payload("workflow_run.completed"))
    assert decisions(d, ok.json()["events"][0]["event_id"])["ci-fix"] == (
        "filtered: conclusion success not in ['failure']"
    )
    pr = await deliver(client, "pull_request", payload("pull_request.opened"), form=True)
    assert d.store.get_run(pr.json()["events"][0]["runs"][0]).automation == "review"
    suite = await deliver(client, "check_suite", payload("check_suite.completed"))
    assert suite.status_code == 202 and suite.json()["events"][0]["runs"] == []  # stored, no match


def test_a_body_is_kept_as_received_only_when_its_escapes_are_spelled_like_ours() -> None:
    assert stored_text(b'{"a": "line\\nnext \\"q\\""}') == '{"a": "line\\nnext \\"q\\""}'
    assert stored_text(b'{"a": "caf\\u00e9"}') is None  # we would write the character itself
    assert stored_text(b'{"a": "a\\/b"}') is None
    assert stored_text(b'{"a": "C:\\\\u"}') is not None  # an escaped backslash, then "u"


def stored_payload(d: Daemon, key: str) -> str:
    with d.store.engine.connect() as conn:
        text = conn.execute(sql("select payload from events where key = :k"), {"k": key})
        return str(text.scalar_one())


async def test_a_stored_body_has_its_secrets_masked_whether_kept_or_reserialised(
    gh: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = gh
    token = "ghp_" + "a1" * 18
    data = payload("issues.opened", issue__body=f"hook secret {SECRET}, token {token}, café")
    kept = json.dumps(data, indent=1, ensure_ascii=False).encode()
    resp = await deliver(client, "issues", data, delivery="kept", body=kept)
    assert resp.status_code == 202
    text = stored_payload(d, "github:kept")
    assert text == kept.decode().replace(SECRET, "***").replace(token, "***")  # as sent

    escaped = json.dumps(data).encode()  # "café" sent as "caf\\u00e9": written again by us
    resp = await deliver(client, "issues", data, delivery="escaped", body=escaped)
    assert resp.status_code == 202
    text = stored_payload(d, "github:escaped")
    assert SECRET not in text and token not in text and "café" in text
    assert json.loads(text)["issue"]["body"] == "hook secret ***, token ***, café"


async def test_forged_missing_and_tampered_signatures_are_refused_and_nothing_stored(
    gh: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = gh
    data = payload("issues.opened")
    forged = await deliver(client, "issues", data, secret="guess")
    assert forged.status_code == 401
    raw = json.dumps(data).encode()
    headers = {
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "x",
        "Content-Type": "application/json",
    }
    missing = await client.post("/hooks/github", content=raw, headers=headers)
    assert missing.status_code == 401 and missing.json()["error"] == "missing X-Hub-Signature-256"
    # A replay of a genuine signature on a changed body.
    tampered = raw.replace(b"Codertocat", b"Mallory")
    replay = await client.post(
        "/hooks/github", content=tampered, headers={**headers, "X-Hub-Signature-256": sign(raw)}
    )
    assert replay.status_code == 401
    bad_json = await deliver(client, "issues", {}, body=b"{not json")
    assert bad_json.status_code == 400
    huge = await deliver(client, "issues", {}, body=b'{"x": "' + b"a" * 70_000 + b'"}')
    assert huge.status_code == 413
    assert d.store.list_events() == [] and d.store.list_runs() == []
    metrics = (await client.get("/metrics")).text
    assert 'nightshift_events_total{outcome="refused",source="github"} 5.0' in metrics


async def test_ping_is_answered_and_not_stored(gh: tuple[Daemon, httpx.AsyncClient]) -> None:
    d, client = gh
    resp = await deliver(client, "ping", payload("ping"))
    assert resp.status_code == 200 and resp.json() == {"ok": True, "events": []}
    assert d.store.list_events() == []


async def test_strangers_and_nightshift_itself_start_nothing(
    gh: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = gh
    stranger = payload("issues.opened", issue__author_association="NONE")
    resp = await deliver(client, "issues", stranger)
    assert decisions(d, resp.json()["events"][0]["event_id"])["triage"] == (
        "filtered: author association NONE not in ['OWNER', 'MEMBER', 'COLLABORATOR']"
    )
    own = payload("issues.opened", sender__login="nightshift-bot")
    resp = await deliver(client, "issues", own)
    assert decisions(d, resp.json()["events"][0]["event_id"])["triage"] == (
        "guard: sent by nightshift's own user nightshift-bot"
    )
    own_branch = payload("pull_request.opened")
    own_branch["pull_request"]["head"]["ref"] = "nightshift/ci-fix/12"
    resp = await deliver(client, "pull_request", own_branch)
    assert decisions(d, resp.json()["events"][0]["event_id"])["review"] == (
        "guard: on nightshift's own branch nightshift/ci-fix/12"
    )
    assert d.store.list_runs() == []


async def test_health_and_readiness(gh: tuple[Daemon, httpx.AsyncClient]) -> None:
    d, client = gh
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.post("/hooks/nope", content=b"{}")).status_code == 404
    wrong_method = await client.get("/hooks/github")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert (await client.post("/hooks/github/extra", content=b"{}")).status_code == 404
    assert d.store.list_events() == []  # nothing refused is stored


async def test_generic_webhooks_hmac_and_bearer(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_HOOK", "deploy-secret-1")
    monkeypatch.setenv("PAGER_TOKEN", "pager-token-2")
    project.skill("noop", "print()", inputs={"service": {"type": "string", "default": ""}})
    project.automation(
        "on-deploy",
        skill="noop",
        triggers=[{"type": "webhook", "source": "deploys"}],
        when="event.type == 'deploys.finished'",
        inputs={"service": "{{ event.payload.service }}"},
    )
    project.automation("on-page", skill="noop", triggers=[{"type": "webhook", "source": "pager"}])
    config = project.config(
        sources={
            "webhooks": {
                "deploys": {
                    "auth": "hmac",
                    "secret": "${DEPLOY_HOOK}",
                    "id_header": "X-Request-Id",
                    "type_field": "phase",
                },
                "pager": {"auth": "bearer", "secret": "${PAGER_TOKEN}"},
            }
        },
    )
    async with running_daemon(config) as d:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
            body = json.dumps({"phase": "finished", "service": "checkout"}).encode()
            headers = {"X-Signature-256": sign(body, "deploy-secret-1"), "X-Request-Id": "r-1"}
            ok = await client.post("/hooks/deploys", content=body, headers=headers)
            assert ok.status_code == 202
            run = d.store.get_run(ok.json()["events"][0]["runs"][0])
            assert (run.automation, run.inputs) == ("on-deploy", {"service": "checkout"})
            assert run.trigger == "webhook:deploys"  # the source's name, not a position
            dup = await client.post("/hooks/deploys", content=body, headers=headers)
            assert dup.json()["events"][0]["duplicate"] is True
            started = json.dumps({"phase": "started"}).encode()
            filtered = await client.post(
                "/hooks/deploys",
                content=started,
                headers={"X-Signature-256": sign(started, "deploy-secret-1")},
            )
            assert filtered.json()["events"][0]["runs"] == []
            bad = await client.post(
                "/hooks/deploys", content=body, headers={"X-Signature-256": "00"}
            )
            assert bad.status_code == 401
            page = await client.post(
                "/hooks/pager", content=b"{}", headers={"Authorization": "Bearer pager-token-2"}
            )
            assert page.status_code == 202
            wrong = await client.post(
                "/hooks/pager", content=b"{}", headers={"Authorization": "Bearer x"}
            )
            assert wrong.status_code == 401
            assert len(d.store.list_runs()) == 2
