"""The script protocol's lines: reading a script's output as lines (bounded), and each
line as the event it reports. Shared by a live script and by a journal read after a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

from pydantic import ValidationError

from ..runs import AGENT_EVENT_TYPES, RUN_EVENT, Message, RunEvent

MAX_LINE = 256 * 1024


class TooLong:
    """A line over the limit, dropped: only its size is kept."""

    def __init__(self, size: int) -> None:
        self.size = size


@dataclasses.dataclass(frozen=True)
class DelegateRequest:
    """A script's `delegate` line: a task for the automation's delegate agent."""

    id: str
    task: str


async def read_lines(stream: asyncio.StreamReader, max_line: int) -> AsyncIterator[bytes | TooLong]:
    """Lines of a stream; a line over `max_line` bytes yields one `TooLong` and is dropped."""
    buf = bytearray()
    dropped = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            if dropped:
                yield TooLong(dropped + len(buf))
            elif buf:
                yield bytes(buf)
            return
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if dropped:
                    dropped += len(chunk) - start
                else:
                    buf += chunk[start:]
                    if len(buf) > max_line:
                        dropped, buf = len(buf), bytearray()
                break
            if dropped:
                yield TooLong(dropped + nl - start)
                dropped = 0
            else:
                buf += chunk[start:nl]
                if len(buf) > max_line:
                    yield TooLong(len(buf))
                else:
                    yield bytes(buf)
                buf = bytearray()
            start = nl + 1


def parse_line(line: bytes | TooLong, max_line: int) -> RunEvent | DelegateRequest | None:
    """One line of a script's output as a RunEvent (a warning `Message` for a line that is
    not one), a delegate request, or None for a blank line."""
    if isinstance(line, TooLong):
        return Message(
            level="warning",
            text=f"script wrote a {line.size}-byte line (limit {max_line}); dropped",
        )
    text = line.decode(errors="replace").strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return Message(level="warning", text=f"malformed line from script (not JSON): {text[:200]}")
    if isinstance(data, dict) and data.get("type") == "delegate":
        if not isinstance(data.get("task"), str) or not data["task"].strip():
            return Message(level="warning", text="delegate request without a task; ignored")
        return DelegateRequest(id=str(data.get("id") or "delegate"), task=data["task"])
    if not isinstance(data, dict) or data.get("type") not in AGENT_EVENT_TYPES:
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        return Message(
            level="warning", text=f"unknown event type {kind!r} from script: {text[:200]}"
        )
    try:
        return RUN_EVENT.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:])
        return Message(
            level="warning",
            text=f"malformed {data['type']} event from script "
            f"({where}: {err['msg']}): {text[:200]}",
        )
