"""Hostile requests over real HTTP: malformed but authentic bodies get 400 with the reason,
forged bytes in headers are refused, slow senders are cut off, an unusable source says so —
and none of it is a 5xx for the client's mistake or stops the daemon."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon import logs
from daemon.app import Daemon
from daemon.testing import Project, running_daemon, wait_for

from .test_webhooks import SECRET, decisions, deliver, payload, sign

AM_TOKEN = "am-token-12345"


@pytest.fixture
async def hooks(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    monkeypatch.setenv("GH_HOOK_SECRET", SECRET)
    project.skill("noop", "print()")
    project.automation(
        "triage",
        skill="noop",
        triggers=[{"type": "github", "events": ["issues"], "labels": ["bug"]}],
        when="event.payload.issue.number > 0",
    )
    project.automation(
        "alerts", skill="noop", triggers=[{"type": "alertmanager", "severity": ["page"]}]
    )
    config = project.config(
        sources={
            "github": {"secret": "${GH_HOOK_SECRET}", "bot_login": "nightshift-bot"},
            "alertmanager": {"token": AM_TOKEN},
            "webhooks": {"orphan": {"auth": "hmac", "secret": "${NIGHTSHIFT_TEST_UNSET_VAR}"}},
        },
        http={"port": 0, "header_timeout": "0.5s", "body_timeout": "0.5s"},
    )
    async with running_daemon(config) as d:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
            yield d, client


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"repository": "octo/x"}, "repository: Input should be a valid dictionary"),
        ({"sender": "bob"}, "sender: Input should be a valid dictionary"),
        ({"action": ["opened"]}, "action: Input should be a valid string"),
        ({"issue__labels": "bug"}, "issue.labels: Input should be a valid list"),
        ({"label": {"name": {"x": 1}}}, "label.name: Input should be a valid string"),
        ({"pull_request": {"head": "main"}}, "pull_request.head: Input should be a valid"),
    ],
)
async def test_an_authentic_github_body_with_wrong_types_gets_400_with_the_field(
    hooks: tuple[Daemon, httpx.AsyncClient], patch: dict[str, Any], reason: str
) -> None:
    d, client = hooks
    resp = await deliver(client, "issues", payload("issues.opened", **patch))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"malformed GitHub payload: {reason}")
    assert d.store.list_events() == []


async def test_a_payload_a_when_filter_cannot_read_is_decided_as_an_error_not_a_retry(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    data = payload("issues.opened")
    data["issue"]["number"] = "seven"  # `> 0` on a string raises TypeError inside Jinja
    data["issue"]["labels"] = [{"name": "bug"}]
    resp = await deliver(client, "issues", data)
    assert resp.status_code == 202, resp.text  # stored, with its decision
    found = decisions(d, resp.json()["events"][0]["event_id"])
    assert found["triage"].startswith("error: template: TypeError"), found
    assert d.store.list_runs() == []


@pytest.mark.parametrize(
    ("alerts", "reason"),
    [
        ([{"labels": "notadict", "status": "firing"}], "alerts.0.labels: Input should be"),
        ([{"labels": {"severity": 3}}], "alerts.0.labels.severity: Input should be a valid"),
        ([{"annotations": ["x"]}], "alerts.0.annotations: Input should be a valid dictionary"),
    ],
)
async def test_a_malformed_alertmanager_notification_gets_400(
    hooks: tuple[Daemon, httpx.AsyncClient], alerts: list[Any], reason: str
) -> None:
    d, client = hooks
    body = {"version": "4", "groupKey": "g", "status": "firing", "alerts": alerts}
    resp = await client.post(
        "/hooks/alertmanager", json=body, headers={"Authorization": f"Bearer {AM_TOKEN}"}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"].startswith(f"malformed Alertmanager notification: {reason}")
    assert d.store.list_events() == []


async def test_non_ascii_bytes_in_signatures_and_tokens_are_refused_and_counted(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    raw = json.dumps(payload("issues.opened")).encode()
    forged = [
        (
            "/hooks/github",
            {
                "X-Hub-Signature-256": "sha256=\xe9\xe9",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": "d1",
            },
        ),
        (
            "/hooks/github",
            {
                "X-Hub-Signature-256": "sha256=" + "\xff" * 64,
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": "d2",
            },
        ),
        ("/hooks/alertmanager", {"Authorization": "Bearer \xe9t\xe9"}),
    ]
    for path, headers in forged:
        encoded = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        resp = await client.post(path, content=raw, headers=encoded)
        assert resp.status_code == 401, (path, resp.text)
    metrics = (await client.get("/metrics")).text
    assert 'nightshift_events_total{outcome="refused",source="github"} 2.0' in metrics
    assert 'nightshift_events_total{outcome="refused",source="alertmanager"} 1.0' in metrics
    assert d.store.list_events() == []


async def test_an_unusable_source_says_why_at_start_answers_503_and_readyz_tells(
    project: Project,
) -> None:
    project.skill("noop", "print()")
    config = project.config(
        sources={
            "webhooks": {"orphan": {"auth": "hmac", "secret": "${NIGHTSHIFT_TEST_UNSET_VAR}"}}
        },
        http={"port": 0},
        logging={"format": "json"},
    )
    out = io.StringIO()
    logs.configure("json", stream=out)
    try:
        async with running_daemon(config) as d:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
                body = b'{"a": 1}'
                resp = await client.post(
                    "/hooks/orphan", content=body, headers={"X-Signature-256": sign(body)}
                )
                assert resp.status_code == 503
                assert resp.json() == {
                    "error": "the orphan source is not usable: "
                    "environment variable NIGHTSHIFT_TEST_UNSET_VAR is not set"
                }
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["unusable_sources"] == {
                    "orphan": "environment variable NIGHTSHIFT_TEST_UNSET_VAR is not set"
                }
    finally:
        structlog.reset_defaults()
    started = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert any(
        e["event"].startswith("webhook source unusable") and e["source"] == "orphan"
        for e in started
    )


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_slow_senders_are_cut_off_and_the_server_keeps_serving(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    port = d.http_port
    assert port is not None
    # Headers that never finish: the connection is closed by the header deadline.
    slow_headers = [
        await _raw(port, b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n") for _ in range(20)
    ]
    # A body that never finishes: 408 from the body deadline, then closed.
    reader, writer = await _raw(
        port,
        b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b'Content-Type: application/json\r\n\r\n{"a":',
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()
    for r, w in slow_headers:
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed by the server
        w.close()
    assert (await client.get("/healthz")).status_code == 200


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = st.sampled_from(
    [
        "action",
        "repository",
        "sender",
        "issue",
        "pull_request",
        "label",
        "comment",
        "review",
        "workflow_run",
        "check_run",
        "check_suite",
        "workflow_job",
        "ref",
        "labels",
        "head",
        "base",
        "full_name",
        "login",
        "name",
        "author_association",
        "conclusion",
        "head_branch",
    ]
)
_PAYLOADS = st.recursive(
    _JSONISH, lambda inner: st.dictionaries(_KEYS, inner, max_size=6), max_leaves=25
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=_PAYLOADS, event=st.sampled_from(["issues", "pull_request", "workflow_run", "push"]))
async def test_fuzzed_signed_github_bodies_never_get_a_5xx(
    hooks: tuple[Daemon, httpx.AsyncClient], body: Any, event: str
) -> None:
    d, client = hooks
    raw = json.dumps(body).encode()
    resp = await deliver(client, event, {}, body=raw, delivery=str(uuid.uuid4()))
    assert resp.status_code < 500, (resp.status_code, resp.text)
    assert not d.stopping


def test_standard_webhooks_published_vector_verifies_and_a_stale_one_is_refused() -> None:
    from datetime import timedelta

    from daemon.sources.github import WebhookRefused
    from daemon.sources.webhooks import check_standard

    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,bogus v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body, secret = b'{"test": 2432232314}', "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    check_standard(secret, body, headers, timedelta(minutes=5), now=1614265330 + 299)
    with pytest.raises(WebhookRefused, match="a replay"):
        check_standard(secret, body, headers, timedelta(minutes=5), now=1614265330 + 301)
    with pytest.raises(WebhookRefused, match="does not match"):
        check_standard(secret, body + b" ", headers, timedelta(minutes=5), now=1614265330)


def _standard_headers(secret_key: bytes, msg_id: str, stamp: int, body: bytes) -> dict[str, str]:
    import base64
    import hashlib
    import hmac

    signed = f"{msg_id}.{stamp}.".encode() + body
    sig = base64.b64encode(hmac.new(secret_key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"v1,{sig}",
    }


async def test_a_standard_webhook_is_keyed_by_its_id_and_a_late_replay_is_refused(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64
    import time

    key = b"0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("DEPLOY_SECRET", "whsec_" + base64.b64encode(key).decode())
    project.skill("noop", "print()")
    project.automation(
        "on-deploy", skill="noop", triggers=[{"type": "webhook", "source": "deploys"}]
    )
    config = project.config(
        sources={"webhooks": {"deploys": {"auth": "standard", "secret": "${DEPLOY_SECRET}"}}},
        http={"port": 0},
    )
    async with running_daemon(config) as d:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.http_port}") as client:
            body = b'{"phase": "finished"}'
            now = int(time.time())
            first = await client.post(
                "/hooks/deploys", content=body, headers=_standard_headers(key, "msg_1", now, body)
            )
            assert first.status_code == 202, first.text
            again = await client.post(
                "/hooks/deploys", content=body, headers=_standard_headers(key, "msg_1", now, body)
            )
            assert again.json()["events"][0]["duplicate"] is True
            # The same capture re-sent under a new id, too late to be fresh.
            late = await client.post(
                "/hooks/deploys",
                content=body,
                headers=_standard_headers(key, "msg_2", now - 3600, body),
            )
            assert late.status_code == 401 and "a replay" in late.json()["error"]
            assert len(d.store.list_runs()) == 1


async def test_a_captured_github_delivery_re_sent_under_new_ids_starts_nothing(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    data = payload("issues.opened", action="labeled", label={"name": "bug"})
    data["issue"]["labels"] = [{"name": "bug"}]
    body = json.dumps(data).encode()
    first = await deliver(client, "issues", data, body=body)
    assert first.status_code == 202, first.text
    # The same signed bytes under new delivery ids (one at a time, then as a burst the
    # store writes as one batch): the payload's identity makes each a duplicate.
    again = await deliver(client, "issues", data, body=body)
    assert again.status_code == 200 and again.json()["events"][0]["duplicate"] is True
    burst = await asyncio.gather(*(deliver(client, "issues", data, body=body) for _ in range(5)))
    assert [r.json()["events"][0]["duplicate"] for r in burst] == [True] * 5
    # The same issue labelled again later is another event (its `updated_at` moved on).
    data["issue"]["updated_at"] = "2030-01-01T00:00:01Z"
    later = await deliver(client, "issues", data)
    assert later.status_code == 202 and not later.json()["events"][0]["duplicate"]
    assert len(d.store.list_runs()) == 2
    assert len(d.store.list_events()) == 2
    # An event that can repeat byte for byte (a second star) has no identity of its own:
    # only its delivery id tells two apart, so a new one is stored.
    star = {"action": "started", "repository": data["repository"], "sender": data["sender"]}
    star_body = json.dumps(star).encode()
    for _ in range(2):
        assert (await deliver(client, "watch", star, body=star_body)).status_code in (200, 202)
    assert len(d.store.list_events(source="github")) == 4


async def test_refused_deliveries_are_kept_with_the_source_delivery_and_reason(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    forged = await deliver(
        client, "issues", payload("issues.opened"), delivery="forged-1", secret="x"
    )
    assert forged.status_code == 401
    malformed = await deliver(client, "issues", payload("issues.opened", sender="bob"))
    assert malformed.status_code == 400
    refused = await wait_for(lambda: len(d.store.refusals()) == 2 and d.store.refusals())
    newest, oldest = refused
    assert (oldest.source, oldest.delivery, oldest.status) == ("github", "forged-1", 401)
    assert oldest.reason == "signature does not match" and oldest.client == "127.0.0.1"
    assert newest.status == 400
    assert newest.reason.startswith("malformed GitHub payload: sender: Input should be a valid")
    assert d.store.list_events() == []  # refused deliveries are no events


async def test_a_flood_of_forgeries_is_recorded_at_a_bounded_rate(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    body = json.dumps(payload("issues.opened")).encode()
    sent = await asyncio.gather(
        *(deliver(client, "issues", {}, body=body, secret="x") for _ in range(60))
    )
    assert {r.status_code for r in sent} == {401}
    await d.store.call(lambda: None)  # the store thread has taken what was handed over
    assert 1 <= len(d.store.refusals(100)) <= 40  # 20 a second per source, over ≤ 2 seconds


async def test_made_up_source_names_share_one_bounded_rate(
    hooks: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooks
    sent = await asyncio.gather(
        *(client.post(f"/hooks/made-up-{i}", content=b"{}") for i in range(60))
    )
    assert {r.status_code for r in sent} == {404}
    await d.store.call(lambda: None)
    recorded = d.store.refusals(100)
    assert 1 <= len(recorded) <= 40
    assert recorded[0].reason.startswith("no webhook source named 'made-up-")
