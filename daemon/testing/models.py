"""A scripted OpenAI-compatible Chat Completions server on 127.0.0.1.

`script(request, n)` gets the request body and its number (1, 2, …) and returns the assistant
message (see `say` and `call`), or `(status, body)` for an HTTP error. Like a real model it is
stateless: everything it knows is in `request["messages"]`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._scripted import ScriptedServer

Reply = dict[str, Any] | tuple[int, dict[str, Any]]
Script = Callable[[dict[str, Any], int], Reply | Awaitable[Reply]]
_ids = itertools.count(1)


def say(text: str) -> dict[str, Any]:
    """An assistant message with text and no tool call (the loop ends)."""
    return {"role": "assistant", "content": text}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """An assistant message calling one tool."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{next(_ids)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


def tool_results(request: dict[str, Any]) -> list[str]:
    """The tool results the loop has sent back so far, in order."""
    return [str(m["content"]) for m in request["messages"] if m.get("role") == "tool"]


class ChatCompletionsDouble(ScriptedServer):
    """`POST /v1/chat/completions`, answered by a script."""

    def __init__(self, script: Script) -> None:
        super().__init__(script)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _app(self) -> Starlette:
        async def completions(request: Request) -> JSONResponse:
            body, reply = await self._ask(request)
            if isinstance(reply, tuple):
                return JSONResponse(reply[1], status_code=reply[0])
            calls = reply.get("tool_calls")
            return JSONResponse(
                {
                    "id": f"chatcmpl-{len(self.requests)}",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": reply,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
