"""Replies from Slack (Socket Mode): thread replies and buttons reach the run's inbox.

Every envelope is acknowledged at once (Slack allows 3 seconds), then handled. A reply in a
run's thread is, by its words: `stop`/`cancel`, `approve`, `deny [reason]`, `status`, or else
steering text. Only the automation's `report.steerers` (and approvers) may steer or stop a run,
only its `report.approvers` may decide, and bot users never count; anyone else gets a short
ephemeral notice and changes nothing. Redelivered envelopes (Slack retries) are handled once:
each accepted reply is stored as an event keyed by Slack's event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import NightshiftError
from ..executor import Executor
from ..loader import Catalog
from ..sources import Dispatching
from ..spec import Automation, parse_key_values
from ..store import DispatchRequest, Store

log = structlog.get_logger(__name__)

_GROUP_TTL = 300.0  # seconds a user group's members are trusted before asking Slack again


def parse_reply(text: str) -> tuple[str, str]:
    """(command, argument) of a thread reply; command `steer` for anything else."""
    words = text.strip().split(maxsplit=1)
    head = words[0].lower().strip(".!") if words else ""
    rest = words[1].strip() if len(words) > 1 else ""
    if head in ("stop", "cancel") and not rest:
        return "cancel", ""
    if head == "approve" and not rest:
        return "approve", ""
    if head == "deny":
        return "deny", rest
    if head in ("status", "pause", "resume", "retry") and not rest:
        return head, ""
    return "steer", text.strip()


class SlackSource:
    """Listens on Socket Mode and turns replies into inbox messages."""

    def __init__(
        self,
        *,
        app_token: str | None,
        client: AsyncWebClient,
        store: Store,
        executor: Executor,
        dispatcher: Dispatching,
        catalog: Callable[[], Catalog],
    ) -> None:
        self._app_token = app_token
        self._client = client
        self._store = store
        self._executor = executor
        self._dispatcher = dispatcher
        self._catalog = catalog
        self._bot_user: str | None = None
        self._groups: dict[str, tuple[float, set[str]]] = {}
        self.connected = asyncio.Event()

    async def identify(self) -> None:
        """Learn the bot's own user id (its posts are never replies)."""
        if self._bot_user is None:
            auth = await self._client.auth_test()
            self._bot_user = auth.get("user_id")

    async def handle_http(self, payload: dict[str, Any]) -> None:
        """An Events API callback or an interactive payload received over HTTP."""
        await self.identify()
        if payload.get("type") == "event_callback":
            await self._on_event(payload)
        else:
            await self._on_action(payload)

    async def run(self) -> None:
        """Listen on Socket Mode until cancelled."""
        await self.identify()
        assert self._app_token is not None
        socket = SocketModeClient(app_token=self._app_token, web_client=self._client)
        socket.socket_mode_request_listeners.append(self._on_request)  # type: ignore[arg-type]
        try:
            await socket.connect()  # type: ignore[no-untyped-call]
            self.connected.set()
            await asyncio.Event().wait()
        finally:
            # Shielded: a second cancel at shutdown must not leave the HTTP session open.
            with contextlib.suppress(BaseException):
                await asyncio.shield(_close_socket(socket))

    async def _on_request(self, socket: SocketModeClient, req: SocketModeRequest) -> None:
        await socket.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        try:
            if req.type == "events_api":
                await self._on_event(req.payload)
            elif req.type == "interactive":
                await self._on_action(req.payload)
            elif req.type == "slash_commands":
                payload = req.payload
                await self._command(
                    str(payload.get("text", "")),
                    str(payload.get("user_id", "")),
                    str(payload.get("channel_id", "")),
                    None,
                    f"slash:{req.envelope_id}",
                )
        except Exception:  # one bad envelope must not stop the listener
            log.exception("slack envelope failed", type=req.type, envelope=req.envelope_id)

    # -- thread replies -------------------------------------------------------------------
    async def _on_event(self, payload: dict[str, Any]) -> None:
        event = payload.get("event") or {}
        if event.get("type") == "app_mention":
            if event.get("bot_id") or event.get("user") == self._bot_user:
                return
            text = re.sub(r"<@[A-Z0-9]+>", "", str(event.get("text", ""))).strip()
            root = str(event.get("thread_ts") or event.get("ts"))
            await self._command(
                text,
                str(event.get("user", "")),
                str(event.get("channel", "")),
                root,
                f"slack:{payload.get('event_id')}",
            )
            return
        if self._bot_user and f"<@{self._bot_user}>" in str(event.get("text", "")):
            return  # a mention: handled as a command through its app_mention event
        thread = event.get("thread_ts")
        if event.get("type") != "message" or not thread or thread == event.get("ts"):
            return
        if event.get("subtype") not in (None, "thread_broadcast"):
            return  # edits, joins, bot messages
        channel, user = str(event.get("channel")), str(event.get("user") or "")
        run_id = await self._store.call(self._store.run_for_thread, channel, str(thread))
        if run_id is None:
            return  # a thread that is not a run's
        if event.get("bot_id") or user == self._bot_user:
            return  # bots neither steer nor approve (and our own posts are not replies)
        stored = await self._store.submit(
            DispatchRequest(
                source="slack",
                type="reply",
                key=f"slack:{payload.get('event_id')}",
                payload={
                    "run_id": run_id,
                    "user": user,
                    "text": event.get("text", ""),
                    "channel": channel,
                    "ts": event.get("ts"),
                },
            )
        )
        if stored is None:
            return  # a redelivery of a reply already handled
        automation = await self._automation_of(run_id)
        command, arg = parse_reply(str(event.get("text", "")))
        by = f"slack:{user}"
        if command in ("approve", "deny"):
            if not await self._may_approve_async(automation, user):
                await self._notice(
                    channel, user, thread, "Only this automation's approvers can decide."
                )
                return
            await self._act(
                channel,
                user,
                thread,
                self._executor.decide(run_id, None, command == "approve", by, arg or None),
            )
        elif command == "status":
            run = await self._store.call(self._store.get_run, run_id)
            await self._client.chat_postMessage(
                channel=channel, thread_ts=thread, text=f"run {run_id} is *{run.status}*"
            )
            return
        else:
            if not await self._may_steer_async(automation, user):
                await self._notice(channel, user, thread, "You cannot steer this run.")
                return
            if command == "cancel":
                await self._act(channel, user, thread, self._executor.cancel(run_id, by))
            elif command == "pause":
                await self._act(channel, user, thread, self._executor.pause(run_id, by))
            elif command == "resume":
                await self._act(channel, user, thread, self._executor.resume(run_id, by))
            elif command == "retry":
                await self._act(
                    channel, user, thread, self._retry(run_id, by, channel, str(thread))
                )
            else:
                ref = f"slack:{channel}:{event.get('ts')}"
                await self._act(channel, user, thread, self._executor.steer(run_id, arg, by, ref))
        with contextlib.suppress(SlackApiError):
            await self._client.reactions_add(
                channel=channel, timestamp=str(event.get("ts")), name="eyes"
            )

    async def _retry(self, run_id: int, by: str, channel: str, thread: str) -> None:
        """Run a finished run's automation again with the same inputs, in the same thread."""
        origin = {"slack": {"channel": channel, "thread_ts": thread}}
        await self._dispatcher.retry(run_id, by, origin)

    # -- chat commands --------------------------------------------------------------------
    async def _command(
        self, text: str, user: str, channel: str, thread: str | None, key: str
    ) -> None:
        """`run <automation> key=value …` or `status`, from a mention or `/nightshift`."""
        stored = await self._store.submit(
            DispatchRequest(
                source="slack",
                type="command",
                key=key,
                payload={"user": user, "text": text, "channel": channel},
            )
        )
        if stored is None:
            return  # redelivered
        words = text.split()
        if words[:1] == ["status"]:
            active = [
                await self._store.call(self._store.get_run, r) for r in self._executor.active_ids
            ]
            lines = [f"• run {r.id} `{r.automation}` *{r.status}*" for r in active] or [
                "no active runs"
            ]
            await self._client.chat_postMessage(
                channel=channel, thread_ts=thread, text="\n".join(lines)
            )
            return
        if len(words) < 2 or words[0] != "run":
            await self._notice(
                channel, user, thread, "Try `run <automation> key=value …` or `status`."
            )
            return
        automation = self._catalog().automations.get(words[1])
        if not await self._may_steer_async(automation, user):
            await self._notice(channel, user, thread, f"You cannot start {words[1]}.")
            return
        origin = {"slack": {"channel": channel, "thread_ts": thread}}
        try:
            inputs = parse_key_values(words[2:])
            run = await self._dispatcher.manual(words[1], inputs, f"slack:{user}", origin)
        except NightshiftError as exc:
            await self._notice(channel, user, thread, str(exc))
            return
        log.info("chat trigger", automation=words[1], run_id=run.id, by=user)

    # -- buttons --------------------------------------------------------------------------
    async def _on_action(self, payload: dict[str, Any]) -> None:
        if payload.get("type") != "block_actions":
            return
        user = str((payload.get("user") or {}).get("id", ""))
        channel = str((payload.get("channel") or {}).get("id", ""))
        thread = (payload.get("message") or {}).get("thread_ts")
        for action in payload.get("actions") or []:
            if action.get("action_id") not in ("approve", "deny"):
                continue
            run_text, _, approval_id = str(action.get("value", "")).partition(":")
            if not run_text.isdigit() or not approval_id:
                continue
            run_id = int(run_text)
            automation = await self._automation_of(run_id)
            if not await self._may_approve_async(automation, user):
                await self._notice(
                    channel, user, thread, "Only this automation's approvers can decide."
                )
                continue
            approved = action["action_id"] == "approve"
            await self._act(
                channel,
                user,
                thread,
                self._executor.decide(run_id, approval_id, approved, f"slack:{user}", None),
            )

    # -- helpers --------------------------------------------------------------------------
    async def _automation_of(self, run_id: int) -> Automation | None:
        run = await self._store.call(self._store.get_run, run_id)
        return self._catalog().automations.get(run.automation)

    async def _members(self, ids: list[str]) -> set[str]:
        """User IDs, with user groups (S…) expanded through usergroups.users.list (cached)."""
        out = {i for i in ids if not i.startswith("S")}
        now = time.monotonic()
        for group in (i for i in ids if i.startswith("S")):
            cached = self._groups.get(group)
            if cached is None or now - cached[0] > _GROUP_TTL:
                try:
                    resp = await self._client.usergroups_users_list(usergroup=group)
                    cached = self._groups[group] = (now, set(resp.get("users") or []))
                except SlackApiError as exc:
                    log.warning("cannot read user group", group=group, error=str(exc))
                    cached = (now, set())
            out |= cached[1]
        return out

    async def _may_approve_async(self, automation: Automation | None, user: str) -> bool:
        if automation is None or not user or user == self._bot_user:
            return False
        return user in await self._members(automation.report.approvers)

    async def _may_steer_async(self, automation: Automation | None, user: str) -> bool:
        if automation is None or not user or user == self._bot_user:
            return False
        report = automation.report
        return user in await self._members([*report.steerers, *report.approvers])

    async def _act(self, channel: str, user: str, thread: Any, action: Any) -> None:
        try:
            await action
        except NightshiftError as exc:  # e.g. the run already ended, or nothing is pending
            await self._notice(channel, user, thread, str(exc))

    async def _notice(self, channel: str, user: str, thread: Any, text: str) -> None:
        with contextlib.suppress(SlackApiError):
            await self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread
            )


async def _close_socket(socket: SocketModeClient) -> None:
    with contextlib.suppress(Exception):
        await socket.close()  # type: ignore[no-untyped-call]
    # close() stops at the first step that fails; the HTTP session must go regardless.
    with contextlib.suppress(Exception):
        await socket.aiohttp_client_session.close()
