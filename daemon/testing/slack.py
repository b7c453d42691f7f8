"""A Slack Web API double on 127.0.0.1 that speaks the real wire protocol.

Drive it with the real `slack_sdk` clients through their `base_url` (which must end in `/api/`).
It answers HTTP 200 with `{"ok": true, ...}` or `{"ok": false, "error": ...}` like Slack, parses
JSON and form bodies, checks the bearer token, and can be told to rate-limit (429 with
Retry-After), to fail with 5xx, or to go down entirely (the port refuses connections) and come
back on the same port.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..http import free_port, serve_in_background, stop


@dataclass
class Posted:
    """A message as the double holds it."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # every chat.update, in order
    received_at: float = field(default_factory=time.time)  # wall clock, for latency checks
    metadata: dict[str, Any] | None = None  # message metadata: event_type, event_payload

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
        self.app_token = "xapp-test-token"  # noqa: S105 - the double's own fake token
        self.ephemeral: list[dict[str, Any]] = []
        self.usergroups: dict[str, set[str]] = {}
        self.sockets: list[WebSocket] = []
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.stalls: dict[str, int] = {}  # method -> calls to take but never answer
        self._released = asyncio.Event()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
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

    def answer(self, method: str, body: dict[str, Any], times: int = 1) -> None:
        """Answer the next `times` calls of `method` with `body` (200), whatever it lacks."""
        self.script.setdefault(method, []).extend([(200, body, {})] * times)

    def stall(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method` but never answer them (until `stop`):
        a caller that gives up, or dies, cannot know they went through."""
        self.stalls[method] = self.stalls.get(method, 0) + times

    async def start(self) -> None:
        """Listen (again on the same port, after `stop()`)."""
        self._released = asyncio.Event()
        self.port = self.port or free_port()
        self._task = await serve_in_background(self._app(), self.port)

    async def stop(self) -> None:
        """Go down: the port refuses connections until `start()` again."""
        self._released.set()  # stalled calls end
        await stop(self._task)
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
            params = {**dict(request.query_params), **params}  # some methods send a query string
            self.calls.append((method, params))
            scripted = self.script.get(method)
            if scripted:
                status, body, headers = scripted.pop(0)
                return JSONResponse(body, status_code=status, headers=headers)
            auth = request.headers.get("authorization", "")
            token = auth.removeprefix("Bearer ").strip() or params.get("token", "")
            wanted = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != wanted:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return JSONResponse({"ok": False, "error": "unknown_method"})
            answer = handler(params)
            if self.stalls.get(method, 0) > 0:
                self.stalls[method] -= 1
                await self._released.wait()
            return JSONResponse(answer)

        async def link(ws: WebSocket) -> None:
            await ws.accept()
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self.sockets) + 1,
                    "debug_info": {"host": "double"},
                    "connection_info": {"app_id": "A0APP"},
                }
            )
            self.sockets.append(ws)
            try:
                while True:
                    ack = json.loads(await ws.receive_text())
                    waiter = self.acks.get(str(ack.get("envelope_id")))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(ack)
            except WebSocketDisconnect:
                pass
            finally:
                if ws in self.sockets:
                    self.sockets.remove(ws)

        return Starlette(
            routes=[
                Route("/api/{method}", api, methods=["POST", "GET"]),
                WebSocketRoute("/link/", link),
            ]
        )

    # -- Socket Mode ----------------------------------------------------------------------
    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link/?ticket={next(self._ids)}"}

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every connected client to reconnect, as Slack does every few hours."""
        for ws in list(self.sockets):
            await ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "double"}}
            )

    async def envelope(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """Send one envelope to the newest connection and return the client's ack."""
        envelope_id = envelope_id or f"env-{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[envelope_id] = waiter
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.sockets:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no Socket Mode client connected")
            await asyncio.sleep(0.01)
        await self.sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": type,
                "payload": payload,
                "accepts_response_payload": type != "events_api",
                "retry_attempt": retry_attempt,
                "retry_reason": "timeout" if retry_attempt else "",
            }
        )
        return await asyncio.wait_for(waiter, timeout)

    async def reply(
        self,
        parent: Posted,
        user: str,
        text: str,
        *,
        bot: bool = False,
        event_id: str | None = None,
        retry_attempt: int = 0,
        envelope_id: str | None = None,
    ) -> Posted:
        """A person (or a bot) replies in a message's thread; delivered as events_api."""
        msg = Posted(parent.channel, self._next_ts(), text, parent.ts)
        self.messages.append(msg)
        event: dict[str, Any] = {
            "type": "message",
            "channel": parent.channel,
            "user": user,
            "text": text,
            "ts": msg.ts,
            "thread_ts": parent.ts,
            "event_ts": msg.ts,
            "channel_type": "channel",
        }
        if bot:
            event.update(bot_id="B0OTHER", subtype="bot_message")
        await self.envelope(
            "events_api",
            {
                "type": "event_callback",
                "team_id": "T0TEAM",
                "api_app_id": "A0APP",
                "event_id": event_id or f"Ev{next(self._ids)}",
                "event_time": 1700000000,
                "event": event,
            },
            retry_attempt=retry_attempt,
            envelope_id=envelope_id,
        )
        return msg

    async def mention(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> Posted:
        """`@nightshift <text>` in a channel (or a thread): a message plus an app_mention."""
        msg = Posted(channel, self._next_ts(), f"<@U0BOT> {text}", thread_ts)
        self.messages.append(msg)
        event = {
            "type": "app_mention",
            "channel": channel,
            "user": user,
            "text": msg.text,
            "ts": msg.ts,
            "event_ts": msg.ts,
            **({"thread_ts": thread_ts} if thread_ts else {}),
        }
        await self.envelope(
            "events_api",
            {
                "type": "event_callback",
                "team_id": "T0TEAM",
                "api_app_id": "A0APP",
                "event_id": f"Ev{next(self._ids)}",
                "event_time": 1700000000,
                "event": event,
            },
        )
        return msg

    async def slash(
        self, channel: str, user: str, text: str, command: str = "/nightshift"
    ) -> dict[str, Any]:
        """A slash command, delivered as a slash_commands envelope (its fields, flat)."""
        return await self.envelope(
            "slash_commands",
            {
                "token": "x",
                "team_id": "T0TEAM",
                "channel_id": channel,
                "user_id": user,
                "command": command,
                "text": text,
                "response_url": "http://127.0.0.1/none",
                "trigger_id": "trig",
                "api_app_id": "A0APP",
            },
        )

    async def click(self, message: Posted, user: str, action_id: str) -> dict[str, Any]:
        """A person clicks a button of `message`; delivered as an interactive envelope."""
        button = next(
            e
            for b in message.blocks
            if b.get("type") == "actions"
            for e in b["elements"]
            if e["action_id"] == action_id
        )
        return await self.envelope(
            "interactive",
            {
                "type": "block_actions",
                "user": {"id": user, "username": user},
                "team": {"id": "T0TEAM"},
                "channel": {"id": message.channel},
                "container": {
                    "type": "message",
                    "message_ts": message.ts,
                    "channel_id": message.channel,
                },
                "message": {"ts": message.ts, "thread_ts": message.thread_ts, "text": message.text},
                "trigger_id": "trig",
                "response_url": "http://127.0.0.1/none",
                "actions": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "block_id": "b",
                        "value": button["value"],
                        "action_ts": "1",
                    }
                ],
            },
        )

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
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        msg = Posted(
            channel, self._next_ts(), str(params.get("text", "")), params.get("thread_ts"), blocks
        )
        msg.metadata = metadata
        self.messages.append(msg)
        return {
            "ok": True,
            "channel": channel,
            "ts": msg.ts,
            "message": {"text": msg.text, "ts": msg.ts, "thread_ts": msg.thread_ts},
        }

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if channel not in self.channels.values():  # an id, never a name
            return {"ok": False, "error": "channel_not_found"}
        newest_first = list(reversed(self.parents(channel)))
        return self._page(newest_first, params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(params.get("channel", "")))
        ts = str(params.get("ts", ""))
        parent = next((m for m in self.messages if m.channel == channel and m.ts == ts), None)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        oldest = str(params.get("oldest") or "0")
        thread = [parent, *self.thread(parent)]
        return self._page(
            [m for m in thread if m.ts > oldest or (inclusive and m.ts == oldest)], params
        )

    @staticmethod
    def _page(shown: list[Posted], params: dict[str, Any]) -> dict[str, Any]:
        """One page of messages as conversations.history and .replies answer it."""
        everything = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 1000)
        page = shown[start : start + limit]
        more = start + limit < len(shown)

        def message(m: Posted) -> dict[str, Any]:
            out: dict[str, Any] = {"type": "message", "text": m.current_text, "ts": m.ts}
            out["thread_ts"] = m.thread_ts or m.ts
            if everything and m.metadata is not None:
                out["metadata"] = m.metadata
            return out

        return {
            "ok": True,
            "messages": [message(m) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
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

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup", ""))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": sorted(self.usergroups[group])}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self.ephemeral.append(params)
        return {"ok": True, "message_ts": self._next_ts()}
