"""A scripted OpenAI Responses API server (SSE) on 127.0.0.1, the wire the Codex CLI speaks.

`script(request, n)` gets the request body and its number (1, 2, …) and returns the output
items of that response (see `shell`, `tool` and `message`), or `(status, body)` for an HTTP
error, or `failed(message)` for a stream that fails mid-way. Like the real API with
`store: false`, every request carries the whole conversation in `input`, so the double is
stateless.
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

_ids = itertools.count(1)


class Failed:
    """A stream that ends with `response.failed` instead of `response.completed`."""

    def __init__(self, message: str) -> None:
        self.message = message


def failed(message: str) -> Failed:
    return Failed(message)


Items = list[dict[str, Any]]
Reply = Items | tuple[int, dict[str, Any]] | Failed
Script = Callable[[dict[str, Any], int], Reply | Awaitable[Reply]]


def shell(cmd: str) -> dict[str, Any]:
    """A call of Codex's shell tool (`exec_command`)."""
    return tool("exec_command", cmd=cmd)


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    """A function call item."""
    return {
        "type": "function_call",
        "id": f"fc_{next(_ids)}",
        "call_id": f"call_{next(_ids)}",
        "name": name,
        "arguments": json.dumps(arguments),
    }


def tool_search(query: str) -> dict[str, Any]:
    """A client-side tool search: Codex answers with the matching deferred (MCP) tools."""
    return {
        "type": "tool_search_call",
        "id": f"ts_{next(_ids)}",
        "call_id": f"call_{next(_ids)}",
        "execution": "client",
        "status": "completed",
        "arguments": {"query": query},
    }


def mcp(server: str, name: str, **arguments: Any) -> dict[str, Any]:
    """A call of an MCP tool found by `tool_search` (its namespace is `mcp__<server>`)."""
    return {**tool(name, **arguments), "namespace": f"mcp__{server}"}


def reasoning(summary: str) -> dict[str, Any]:
    """A reasoning item with a summary (what a reasoning model shows of its thinking)."""
    return {
        "type": "reasoning",
        "id": f"rs_{next(_ids)}",
        "summary": [{"type": "summary_text", "text": summary}],
    }


def message(text: str) -> dict[str, Any]:
    """A final assistant message item."""
    return {
        "type": "message",
        "role": "assistant",
        "id": f"msg_{next(_ids)}",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def user_texts(request: dict[str, Any]) -> list[str]:
    """Every user message text in the request's input, in order."""
    texts = []
    for item in request.get("input", []):
        if item.get("type") == "message" and item.get("role") == "user":
            for part in item.get("content", []):
                if part.get("type") == "input_text":
                    texts.append(str(part.get("text", "")))
    return texts


def tool_outputs(request: dict[str, Any]) -> list[str]:
    """The outputs of the tool calls so far, in order (text parts joined)."""
    found = []
    for item in request.get("input", []):
        if item.get("type") not in ("function_call_output", "custom_tool_call_output"):
            continue
        output = item.get("output", "")
        if isinstance(output, list):
            output = "\n".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
        found.append(str(output))
    return found


class ResponsesDouble(ScriptedServer):
    """`POST /v1/responses`, answered by a script as a server-sent event stream."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _app(self) -> Starlette:
        async def responses(request: Request) -> Response:
            body, reply = await self._ask(request)
            if isinstance(reply, tuple):
                return JSONResponse(reply[1], status_code=reply[0])
            n = len(self.requests)
            return StreamingResponse(self._stream(reply, n, body), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/responses", responses, methods=["POST"])])

    async def _stream(
        self, reply: Items | Failed, n: int, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        resp = {"id": f"resp_{n}", "object": "response", "model": body.get("model")}
        yield sse_frame({"type": "response.created", "response": {**resp, "status": "in_progress"}})
        if isinstance(reply, Failed):
            yield sse_frame(
                {
                    "type": "response.failed",
                    "response": {
                        **resp,
                        "status": "failed",
                        "error": {"code": "server_error", "message": reply.message},
                    },
                }
            )
            return
        for index, item in enumerate(reply):
            for stage in ("added", "done"):
                yield sse_frame(
                    {"type": f"response.output_item.{stage}", "output_index": index, "item": item}
                )
        usage = {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 120,
        }
        yield sse_frame(
            {
                "type": "response.completed",
                "response": {**resp, "status": "completed", "output": reply, "usage": usage},
            }
        )
