"""The writer process: events are stored by a child of the daemon over a pipe, with the same
transaction, guards, clock and redaction as the in-process path, and a writer that dies loses
nothing the daemon acknowledged."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from daemon.app import Daemon
from daemon.secrets import redactor
from daemon.store import Decision, Dispatched, DispatchRequest, NewRun, RunGuard, RunRow
from daemon.store.wire import decode_batch, decode_results, encode_batch, encode_results
from daemon.testing import wait_for

from .test_webhooks import deliver, gh, payload  # noqa: F401 - gh is the fixture used


@pytest.fixture
async def hooked(
    gh: tuple[Daemon, httpx.AsyncClient],  # noqa: F811 - the imported fixture
) -> tuple[Daemon, httpx.AsyncClient]:
    """The webhook tests' daemon, once its writer process (started with the HTTP server) is
    ready."""
    starting = gh[0].store.start_writer_process()
    assert starting is not None
    await starting
    return gh


def writer_pid(d: Daemon) -> int:
    process = d.store._process  # the test looks at the child it must kill
    assert process is not None
    assert process.pid is not None
    return process.pid


def parent_and_argv(pid: int) -> tuple[int, bytes]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(") ", 1)[1].split()[1]), Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_events_are_stored_by_a_child_process_that_never_sees_the_url_in_argv(
    hooked: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooked
    assert d.store.writes_in_process
    pid = writer_pid(d)
    assert pid != os.getpid()
    parent, argv = parent_and_argv(pid)
    assert parent == os.getpid()
    assert b"nightshift.db" not in argv
    sent = payload("issues.opened")
    resp = await deliver(client, "issues", sent, delivery="w-1")
    assert resp.status_code == 202
    (event,) = resp.json()["events"]
    found = d.store.get_event(event["event_id"])
    assert found is not None
    row, decisions = found
    assert row.key == "github:w-1"
    assert row.payload == sent
    assert {x.automation: x.decision for x in decisions}["triage"] == "matched"


async def test_a_secret_registered_after_the_writer_started_is_masked_by_it(
    hooked: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooked
    redactor.register("late-registered-secret-4711")
    sent = payload("issues.opened", issue__body="leaked late-registered-secret-4711 here")
    resp = await deliver(client, "issues", sent)
    assert resp.status_code == 202
    (event,) = resp.json()["events"]
    found = d.store.get_event(event["event_id"])
    assert found is not None
    assert found[0].payload["issue"]["body"] == "leaked *** here"


async def test_a_killed_writer_loses_no_acknowledged_event_and_is_started_again(
    hooked: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooked
    first = writer_pid(d)
    os.kill(first, signal.SIGKILL)
    # Whether the next batch meets the dead pipe (503: the sender delivers again) or a
    # writer already restarted (202), the delivery ends up stored exactly once.
    resp = await deliver(client, "issues", payload("issues.opened"), delivery="after-kill")
    if resp.status_code == 503:
        resp = await deliver(client, "issues", payload("issues.opened"), delivery="after-kill")
    assert resp.status_code == 202
    again = await deliver(client, "issues", payload("issues.opened"), delivery="after-kill")
    assert again.status_code == 200
    assert again.json()["events"][0]["duplicate"] is True
    assert writer_pid(d) != first
    stored = [e for e in d.store.list_events(limit=10) if e.key == "github:after-kill"]
    assert len(stored) == 1


async def test_a_writer_killed_between_batches_is_replaced_before_the_next_one(
    hooked: tuple[Daemon, httpx.AsyncClient],
) -> None:
    d, client = hooked
    process = d.store._process
    assert process is not None
    first = writer_pid(d)
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: not process.running)
    resp = await deliver(client, "issues", payload("issues.opened"))
    assert resp.status_code == 202
    assert writer_pid(d) != first


def test_a_batch_crosses_the_pipe_unchanged() -> None:
    at = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    run = NewRun(
        "triage",
        "github:0",
        {"issue": 7, "labels": ["bug"]},
        not_before=at + timedelta(minutes=5),
        key="7",
        guard=RunGuard(timedelta(hours=1), (2, timedelta(minutes=30)), "supersede"),
    )
    requests = [
        DispatchRequest(
            source="github",
            type="issues.opened",
            payload={"issue": {"number": 7, "body": "ünïcode"}},
            key="github:d-1",
            identity="github:issues:0f",
            received_at=at,
            decisions=[Decision("triage", "matched", "", run), Decision("other", "filtered", "x")],
        ),
        DispatchRequest(
            source="schedule",
            type="fire",
            payload={},
            key="schedule:nightly:0",
            received_at=at,
            schedule_mark=("nightly", "0", at),
        ),
    ]
    frame = encode_batch(requests, ["s3cr3t-value"])
    decoded, secrets = decode_batch(frame[4:])
    assert secrets == ["s3cr3t-value"]
    for sent, got in zip(requests, decoded, strict=True):
        assert got.payload_json is not None
        assert json.loads(got.payload_json) == sent.payload
        assert (
            got.source,
            got.type,
            got.key,
            got.identity,
            got.received_at,
            got.schedule_mark,
        ) == (
            sent.source,
            sent.type,
            sent.key,
            sent.identity,
            sent.received_at,
            sent.schedule_mark,
        )
        assert list(got.decisions) == list(sent.decisions)
    created = RunRow(id=3, automation="triage", trigger="github:0", inputs={"a": 1}, created_at=at)
    results: list[Dispatched | None] = [Dispatched(5, [created], {1: 3}), None]
    back = decode_results(encode_results(results)[4:])
    assert not isinstance(back, str)
    assert back[1] is None
    assert back[0] is not None
    assert (back[0].event_id, back[0].superseded) == (5, {1: 3})
    assert back[0].runs[0].model_dump() == created.model_dump()
