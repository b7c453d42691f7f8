"""What the scripted model servers share: a script answers each request, and every request
(body and headers) is kept for the test to inspect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Self

import httpx
from starlette.requests import Request

from ..http import free_port, serve_in_background, stop


def sse_frame(event: dict[str, Any]) -> bytes:
    """One server-sent event, named by its `type` like the real APIs do."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class Served:
    """A double serving its ASGI app (`_app()`) on 127.0.0.1 for the length of `async with`."""

    port = 0
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.port = free_port()
        self._task = await serve_in_background(self._app(), self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await stop(self._task)

    def transport(self) -> httpx.AsyncBaseTransport:
        """The double in-process, for a client that takes an httpx `transport=`: no port,
        no `async with` (the model loop's `BuiltinBackend(transport=…)`)."""
        return httpx.ASGITransport(app=self._app())

    def _app(self) -> Any:
        raise NotImplementedError


class ScriptedServer(Served):
    """A server on 127.0.0.1 whose answers come from `script(request_body, n)`."""

    def __init__(self, script: Callable[[dict[str, Any], int], Any]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def _ask(self, request: Request) -> tuple[dict[str, Any], Any]:
        """Record the request and get the script's reply (awaited if it is a coroutine)."""
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.script(body, len(self.requests))
        if isinstance(reply, Awaitable):
            reply = await reply
        return body, reply
