"""How dispatch requests and their outcomes cross the pipe to the writer process.

A frame is a 4-byte big-endian length and its content. A batch's content is a small JSON
header (the requests without their payloads, and any secrets registered since the last batch)
followed by each payload's JSON text as its own length-prefixed part, so a 10 KB webhook body
is neither escaped into the header nor parsed again by the writer: it redacts and stores the
text as it is.
"""

from __future__ import annotations

import struct
from datetime import datetime, timedelta
from typing import Any, BinaryIO

import orjson

from ..secrets import json_text
from .requests import Decision, Dispatched, DispatchRequest, NewRun, RunGuard
from .tables import RunRow

_LEN = struct.Struct(">I")


class WireError(Exception):
    """A frame that does not decode (the other side is not a nightshift writer, or died)."""


def frame(content: bytes) -> bytes:
    """`content` with its length in front."""
    return _LEN.pack(len(content)) + content


class Frames:
    """Cuts frames out of a stream that arrives in pieces (a pipe's data callbacks)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The contents of every frame `data` completes, in order."""
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        while len(buffer) >= _LEN.size:
            (size,) = _LEN.unpack_from(buffer)
            end = _LEN.size + size
            if len(buffer) < end:
                break
            out.append(bytes(buffer[_LEN.size : end]))
            del buffer[:end]
        return out


def read_frame_sync(stream: BinaryIO) -> bytes | None:
    """The next frame's content from a blocking stream; None at a clean end of stream."""
    head = stream.read(_LEN.size)
    if not head:
        return None
    if len(head) < _LEN.size:
        raise WireError("stream ended inside a frame header")
    (size,) = _LEN.unpack(head)
    content = stream.read(size)
    if len(content) < size:
        raise WireError("stream ended inside a frame")
    return content


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _new_run(run: NewRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    guard = run.guard
    return {
        "automation": run.automation,
        "trigger": run.trigger,
        "inputs": run.inputs,
        "attempt": run.attempt,
        "retry_of": run.retry_of,
        "not_before": _iso(run.not_before),
        "key": run.key,
        "untrusted": run.untrusted,
        "guard": None
        if guard is None
        else {
            "dedup_window": guard.dedup_window.total_seconds(),
            "throttle": None
            if guard.throttle is None
            else [guard.throttle[0], guard.throttle[1].total_seconds()],
            "on_active": guard.on_active,
            "cost_cap": None
            if guard.cost_cap is None
            else [guard.cost_cap[0], guard.cost_cap[1].total_seconds()],
        },
    }


def _read_new_run(data: dict[str, Any] | None) -> NewRun | None:
    if data is None:
        return None
    guard = data["guard"]
    return NewRun(
        automation=data["automation"],
        trigger=data["trigger"],
        inputs=data["inputs"],
        attempt=data["attempt"],
        retry_of=data["retry_of"],
        not_before=_when(data["not_before"]),
        key=data["key"],
        untrusted=bool(data.get("untrusted", False)),
        guard=None
        if guard is None
        else RunGuard(
            dedup_window=timedelta(seconds=guard["dedup_window"]),
            throttle=None
            if guard["throttle"] is None
            else (int(guard["throttle"][0]), timedelta(seconds=guard["throttle"][1])),
            on_active=guard["on_active"],
            cost_cap=None
            if guard.get("cost_cap") is None
            else (float(guard["cost_cap"][0]), timedelta(seconds=guard["cost_cap"][1])),
        ),
    )


def encode_batch(requests: list[DispatchRequest], secrets: list[str] | None = None) -> bytes:
    """One frame holding `requests` (and secrets the writer must learn to redact first)."""
    header: dict[str, Any] = {
        "requests": [
            {
                "source": r.source,
                "type": r.type,
                "key": r.key,
                "identity": r.identity,
                "received_at": _iso(r.received_at),
                "schedule_mark": None
                if r.schedule_mark is None
                else [r.schedule_mark[0], r.schedule_mark[1], _iso(r.schedule_mark[2])],
                "decisions": [
                    {
                        "automation": d.automation,
                        "decision": d.decision,
                        "detail": d.detail,
                        "run": _new_run(d.run),
                        "run_id": d.run_id,
                    }
                    for d in r.decisions
                ],
            }
            for r in requests
        ]
    }
    if secrets:
        header["secrets"] = secrets
    parts = [frame(orjson.dumps(header))]
    for r in requests:
        text = r.payload_json if r.payload_json is not None else json_text(r.payload)
        parts.append(frame(text.encode()))
    return frame(b"".join(parts))


def decode_batch(content: bytes) -> tuple[list[DispatchRequest], list[str]]:
    """The requests of a batch frame, each with its payload as JSON text, and new secrets."""
    view = memoryview(content)
    (size,) = _LEN.unpack_from(view, 0)
    offset = _LEN.size + size
    header = orjson.loads(view[_LEN.size : offset])
    out: list[DispatchRequest] = []
    for item in header["requests"]:
        (size,) = _LEN.unpack_from(view, offset)
        text = bytes(view[offset + _LEN.size : offset + _LEN.size + size]).decode()
        offset += _LEN.size + size
        mark = item["schedule_mark"]
        out.append(
            DispatchRequest(
                source=item["source"],
                type=item["type"],
                payload={},
                payload_json=text,
                key=item["key"],
                identity=item["identity"],
                received_at=_when(item["received_at"]),
                schedule_mark=None if mark is None else (mark[0], mark[1], _when(mark[2])),  # type: ignore[arg-type]
                decisions=[
                    Decision(
                        automation=d["automation"],
                        decision=d["decision"],
                        detail=d["detail"],
                        run=_read_new_run(d["run"]),
                        run_id=d["run_id"],
                    )
                    for d in item["decisions"]
                ],
            )
        )
    if offset != len(content):
        raise WireError("batch frame has trailing bytes")
    return out, list(header.get("secrets", ()))


def encode_results(results: list[Dispatched | None]) -> bytes:
    """The outcome of a batch, in request order."""
    body = [
        None
        if r is None
        else {
            "event_id": r.event_id,
            "runs": [run.model_dump(mode="json") for run in r.runs],
            "superseded": [[old, new] for old, new in r.superseded.items()],
        }
        for r in results
    ]
    return frame(orjson.dumps({"results": body}))


def encode_error(message: str) -> bytes:
    """A batch that could not be written (nothing of it is stored)."""
    return frame(orjson.dumps({"error": message}))


def decode_results(content: bytes) -> list[Dispatched | None] | str:
    """The results of a batch, or the writer's error message."""
    data = orjson.loads(content)
    if "error" in data:
        return str(data["error"])
    return [
        None
        if r is None
        else Dispatched(
            event_id=int(r["event_id"]),
            runs=[RunRow.model_validate(run) for run in r["runs"]],
            superseded={int(old): int(new) for old, new in r["superseded"]},
        )
        for r in data["results"]
    ]
