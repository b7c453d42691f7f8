"""A Slack Web API double on 127.0.0.1 that speaks the real wire protocol.

Drive it with the real `slack_sdk` clients through their `base_url` (which must end in `/api/`).
It answers HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": ...}` like Slack, parses
JSON and form bodies, checks the bearer token, and can be told to rate-limit (429 with
Retry-After), to fail with 5xx, or to go down entirely (the port refuses connections) and come
back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..asgi import serve


@dataclass
class Posted:
    """A message as the double holds it."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # every chat.update, in order

    @property
    def current_text(self) -> str:
        return str(self.updates[-1]["text"]) if self.updates else self.text


class SlackDouble:
    """Slack's Web API, as far as nightshift uses it."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test-token",  # noqa: S107 - the double's own fake token
        channels: dict[str, str] | None = None,
        not_member: set[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.channels = channels or {"#ops": "C0OPS", "#deps": "C0DEPS"}
        self.not_member = not_member or set()
        self.messages: list[Posted] = []
        self.reactions: list[tuple[str, str, str]] = []  # (channel, ts, name)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.port = 0
        self._ts = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    # -- control --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and Retry-After."""
        self.script.setdefault(method, []).extend(
            [(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})]
            * times
        )

    def fail(self, method: str, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with an HTTP error."""
        self.script.setdefault(method, []).extend([(status, {"ok": False}, {})] * times)

    async def start(self) -> None:
        if not self.port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
        ready = asyncio.Event()
        self._task = asyncio.create_task(serve(self._app(), ready, port=self.port))
        await ready.wait()

    async def stop(self) -> None:
        """Go down: the port refuses connections until `start()` again."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> SlackDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def thread(self, parent: Posted) -> list[Posted]:
        """Replies in a message's thread, in order."""
        return [m for m in self.messages if m.thread_ts == parent.ts]

    def parents(self, channel: str = "C0OPS") -> list[Posted]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    # -- the API --------------------------------------------------------------------------
    def _app(self) -> Starlette:
        async def api(request: Request) -> Response:
            method = request.path_params["method"]
            raw = await request.body()
            ctype = request.headers.get("content-type", "")
            params: dict[str, Any] = (
                json.loads(raw or b"{}")
                if ctype.startswith("application/json")
                else dict(parse_qsl(raw.decode()))
            )
            self.calls.append((method, params))
            scripted = self.script.get(method)
            if scripted:
                status, body, headers = scripted.pop(0)
                return JSONResponse(body, status_code=status, headers=headers)
            auth = request.headers.get("authorization", "")
            token = auth.removeprefix("Bearer ").strip() or params.get("token", "")
            if token != self.bot_token:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return JSONResponse({"ok": False, "error": "unknown_method"})
            return JSONResponse(handler(params))

        return Starlette(routes=[Route("/api/{method}", api, methods=["POST", "GET"])])

    def _channel(self, name: str) -> str | None:
        if name in self.channels.values():
            return name
        return self.channels.get(name)

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
            "team_id": "T0TEAM",
            "user": "nightshift",
            "url": "https://test.slack.com/",
        }

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.not_member:
            return {"ok": False, "error": "not_in_channel"}
        blocks = params.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not params.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        msg = Posted(
            channel, self._next_ts(), str(params.get("text", "")), params.get("thread_ts"), blocks
        )
        self.messages.append(msg)
        return {
            "ok": True,
            "channel": channel,
            "ts": msg.ts,
            "message": {"text": msg.text, "ts": msg.ts, "thread_ts": msg.thread_ts},
        }

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")))
        for msg in self.messages:
            if msg.channel == channel and msg.ts == params.get("ts"):
                msg.updates.append(params)
                return {"ok": True, "channel": channel, "ts": msg.ts, "text": params.get("text")}
        return {"ok": False, "error": "message_not_found"}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        self.reactions.append(
            (str(params["channel"]), str(params["timestamp"]), str(params["name"]))
        )
        return {"ok": True}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._next_ts()}
