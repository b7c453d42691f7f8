"""A scripted Anthropic Messages API server (SSE) on 127.0.0.1, the wire Claude Code speaks.

`script(request, n)` gets the request body and its number and returns the assistant's content
blocks (see `text` and `use`), or `(status, body)` for an HTTP error. Stateless like the real
API: the whole conversation is in `request["messages"]`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._scripted import ScriptedServer, sse_frame

Blocks = list[dict[str, Any]]
Reply = Blocks | tuple[int, dict[str, Any]]
Script = Callable[[dict[str, Any], int], Reply | Awaitable[Reply]]
_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    """A text block."""
    return {"type": "text", "text": value}


def use(name: str, **tool_input: Any) -> dict[str, Any]:
    """A tool_use block (`Bash` takes `command`, MCP tools are `mcp__<server>__<tool>`)."""
    return {"type": "tool_use", "id": f"toolu_{next(_ids):04d}", "name": name, "input": tool_input}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content or []:
        if block.get("type") == "text":
            out.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            out.extend(_texts(block.get("content")))
    return out


def user_texts(request: dict[str, Any]) -> list[str]:
    """Every text a user message carries (prompts, steering), tool results left out."""
    found = []
    for m in request.get("messages", []):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            found.append(content)
            continue
        found.extend(str(b.get("text", "")) for b in content or [] if b.get("type") == "text")
    return found


def tool_results(request: dict[str, Any]) -> list[str]:
    """The tool results sent back so far, in order."""
    found = []
    for m in request.get("messages", []):
        for block in m.get("content") if isinstance(m.get("content"), list) else []:
            if block.get("type") == "tool_result":
                found.append("\n".join(_texts(block.get("content"))))
    return found


class MessagesDouble(ScriptedServer):
    """`POST /v1/messages`, answered by a script as a server-sent event stream."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> Starlette:
        async def probe(request: Request) -> Response:
            return Response(status_code=200)

        async def messages(request: Request) -> Response:
            body, reply = await self._ask(request)
            if isinstance(reply, tuple):
                return JSONResponse(reply[1], status_code=reply[0])
            return StreamingResponse(
                self._stream(reply, len(self.requests), body), media_type="text/event-stream"
            )

        return Starlette(
            routes=[
                Route("/", probe, methods=["GET", "HEAD"]),
                Route("/v1/messages", messages, methods=["POST"]),
            ]
        )

    async def _stream(self, blocks: Blocks, n: int, body: dict[str, Any]) -> AsyncIterator[bytes]:
        yield sse_frame(
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{n:04d}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 1},
                },
            }
        )
        for index, block in enumerate(blocks):
            if block["type"] == "tool_use":
                start = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            else:
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            yield sse_frame({"type": "content_block_start", "index": index, "content_block": start})
            yield sse_frame({"type": "content_block_delta", "index": index, "delta": delta})
            yield sse_frame({"type": "content_block_stop", "index": index})
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        yield sse_frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            }
        )
        yield sse_frame({"type": "message_stop"})
