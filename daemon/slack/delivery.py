"""Slack delivery: one thread per run, kept in order through a persisted outbox.

`SlackDelivery` sends the outbox items `reporter.SlackReporter` queues with the real slack-sdk
client in id order: while Slack is unreachable or rate-limits, the head item waits (order
kept, nothing lost — also across restarts, since the outbox is in the store); an item Slack
rejects for good (channel_not_found, not_in_channel, …) is marked failed with the reason, and
`nightshift show` lists it. Consecutive replies of a run are coalesced, and posts to one
channel are spaced by `min_interval`, so a chatty run never floods a channel.

Slack has no idempotency key for a new message, so each message carries the ids of the
items it holds as message metadata; one whose earlier post may have gone through unrecorded
(the call timed out, or another process — a replica that died, this one before a crash —
left it pending) is looked up first — a reply in its thread, a run's first message among its
channel's newest — and recorded rather than posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from ..config import SlackConfig
from ..store import OutboxItem, Store

log = structlog.get_logger(__name__)
_FETCH = 200  # outbox items read per pass
_PARENTS_KEPT = 1000  # posted parent messages remembered, newest kept
# Settled item ids remembered: an item read back from the store by a resync in the moment
# between its write and its hand-over here must not be posted twice.
_SETTLED_KEPT = 10_000

# Errors that no retry will fix: the item is marked failed and the queue moves on.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "message_not_found",
        "cant_update_message",
        "restricted_action",
        "invalid_arguments",
    }
)
_META = "nightshift_outbox"  # the metadata event type of a reply: the items it holds
_LOOKUP_PAGES = 5  # pages of a thread read to find a reply posted but not recorded
_MAX_COALESCED = 20
_MAX_FAULTS = 3  # unexpected failures of one item before it is recorded as failed
_MAX_COALESCED_CHARS = 3500


def make_client(
    config: SlackConfig, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The real slack-sdk client; 429s are retried after Retry-After by slack-sdk itself.

    Give it a `session` to keep: without one slack-sdk opens (and closes) a session, and so a
    connection and a TLS handshake, for every call — one per reported step.
    """
    return AsyncWebClient(
        token=config.bot_token.resolve(),
        base_url=config.base_url,
        timeout=10,
        session=session,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )


class SlackDelivery:
    """Sends outbox items to Slack, in order, until cancelled."""

    def __init__(
        self,
        store: Store,
        client: AsyncWebClient,
        min_interval: float,
        others: Callable[[], Awaitable[set[str]]] | None = None,
        holds: Callable[[int], Awaitable[bool]] | None = None,
        resync_every: float = 5.0,
    ) -> None:
        """`others`: the other live replicas sharing the database; the backlog leaves their
        runs' items to them (each delivers what its runs queued). `holds`: whether this
        replica holds a run now — checked before each post, so a replica that lost a run
        (partitioned, stalled) posts nothing more of it; and every `resync_every` seconds the
        store's backlog is read again, so the items of a run taken over from a replica that
        went silent are delivered by the one holding it now."""
        self._store = store
        self._others = others
        self._holds = holds
        self._resync_every = resync_every
        self._settled: deque[int] = deque(maxlen=_SETTLED_KEPT)  # recently settled item ids
        self._settled_ids: set[int] = set()
        self._parent_missing = False  # the head item's parent is still to be read
        self._client = client
        self._min_interval = min_interval
        self._wake = asyncio.Event()
        self._last_post: dict[str, float] = {}
        self._parents: dict[int, OutboxItem] = {}  # parent messages posted by this process
        self._incoming: list[OutboxItem] = []
        self._written: deque[Future[OutboxItem]] = deque()
        self._watched: Future[OutboxItem] | None = None
        self._resync = True  # the backlog a previous process left
        self._faults: dict[int, int] = {}  # item id -> unexpected failures so far
        # Items this process queued (the rest it read from the store: another process left
        # them, and may have posted one before it stopped), and items whose post may have
        # gone through unrecorded: looked up in their thread before they are posted.
        self._from_here: set[int] = set()
        self._unsure: set[int] = set()
        self._looked_up: deque[int] = deque(maxlen=_SETTLED_KEPT)  # runs looked up already
        # Runs begun elsewhere (taken over from a silent replica, or left by this daemon's
        # last process) whose backlog was read before this process's own items of them go:
        # what the other process left is posted first, in order.
        self._caught_up: deque[int] = deque(maxlen=_SETTLED_KEPT)
        self.backoff_max = 30.0

    def enqueue(self, item: OutboxItem) -> None:
        """An item just stored: no need to read it back from the store."""
        self._from_here.add(item.id)
        self._incoming.append(item)
        self._wake.set()

    def enqueue_written(self, written: Future[OutboxItem]) -> None:
        """An item whose write was handed to the store thread: taken once written (the
        store thread writes in order, so every item before it is written by then)."""
        self._written.append(written)
        self._wake.set()

    def _take_written(self) -> list[OutboxItem]:
        """The handed-over items written so far, in order; a wake-up is arranged for the
        first one still being written (only then does its completion cross threads)."""
        taken = []
        while self._written and self._written[0].done():
            written = self._written.popleft()
            if written.exception() is not None:
                log.error("slack reply not stored", error=str(written.exception()))
            else:
                taken.append(written.result())
                self._from_here.add(taken[-1].id)
        if self._written and self._written[0] is not self._watched:
            self._watched = self._written[0]
            asyncio.wrap_future(self._watched).add_done_callback(lambda _: self._wake.set())
        return taken

    async def run(self) -> None:
        backoff = 0.2
        # The pending items live here: new ones come from the reporter as they are stored, and
        # the store is read for the backlog a previous process left (in pages) and, now and
        # then, for the items of runs this replica took over.
        items: list[OutboxItem] = []
        known: set[int] = set()  # ids in `items`
        page_after = 0
        next_resync = time.monotonic() + self._resync_every
        self._wake.set()
        while True:
            if time.monotonic() >= next_resync:
                next_resync = time.monotonic() + self._resync_every
                if not self._resync:
                    self._resync, page_after = True, 0
                    self._wake.set()
            if self._wake.is_set():
                self._wake.clear()
                if self._resync:
                    others = await self._others() if self._others is not None else set()
                    fresh = await self._store.call(
                        self._store.pending_outbox, page_after, _FETCH, sorted(others)
                    )
                    self._resync = len(fresh) == _FETCH  # a long backlog: read on next pass
                    if fresh:
                        page_after = fresh[-1].id
                    if self._resync:
                        self._wake.set()  # new items wait until the backlog is read
                    else:
                        fresh += self._incoming + self._take_written()
                        self._incoming = []
                else:
                    fresh, self._incoming = self._incoming + self._take_written(), []
                added = [i for i in fresh if i.id not in known and i.id not in self._settled_ids]
                for item in added:
                    known.add(item.id)
                if added:  # each once, in id order
                    items = sorted(items + added, key=lambda i: i.id)
                if not self._resync and self._begun_elsewhere(added):
                    self._resync, page_after = True, 0
                    self._wake.set()
                    continue
            if not items:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), max(next_resync - time.monotonic(), 0.01)
                    )
                continue
            head = items[0]
            if not await self._held(head):
                items.pop(0)
                known.discard(head.id)
                self._from_here.discard(head.id)
                continue
            wait = self._cooldown(head)
            if wait > 0:
                await asyncio.sleep(wait)  # more replies may arrive meanwhile and coalesce
                continue
            settled = await self._deliver(head, items)
            if settled is None and self._parent_missing:
                self._parent_missing = False
                self._resync, page_after = True, 0
                self._wake.set()
                await asyncio.sleep(0.2)
            elif settled is None:
                log.warning("slack unavailable; will retry", item=head.id, backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
            else:
                backoff = 0.2
                items = [i for i in items if i.id not in settled]
                for done in settled:
                    known.discard(done)
                    self._from_here.discard(done)
                    self._unsure.discard(done)
                    if len(self._settled) == self._settled.maxlen:
                        self._settled_ids.discard(self._settled[0])
                    self._settled.append(done)
                    self._settled_ids.add(done)

    def _begun_elsewhere(self, added: list[OutboxItem]) -> bool:
        """Whether this process queued a message for a run whose thread it did not begin,
        and has not read the backlog since: what another process left of that run is to be
        read (and posted) first."""
        elsewhere = {
            i.run_id
            for i in added
            if i.id in self._from_here
            and i.parent_id is not None
            and i.parent_id not in self._parents
            and i.run_id not in self._caught_up
        }
        self._caught_up.extend(elsewhere)
        return bool(elsewhere)

    async def _held(self, item: OutboxItem) -> bool:
        """Whether this replica still holds `item`'s run: a lost run's items are left, unsent,
        to the replica holding it now."""
        if self._holds is None or await self._holds(item.run_id):
            return True
        log.warning("not posted: the run belongs to another replica now", run_id=item.run_id)
        return False

    def _cooldown(self, item: OutboxItem) -> float:
        # Pacing is for thread replies (chatty step streams); a new run's parent message and
        # in-place updates go at once.
        if item.kind != "reply":
            return 0.0
        last = self._last_post.get(item.channel)
        return 0.0 if last is None else last + self._min_interval - time.monotonic()

    async def _deliver(self, item: OutboxItem, pending: list[OutboxItem]) -> set[int] | None:
        """Send `item` (with what coalesces into it); the ids settled, or None to retry."""
        parent = None
        if item.parent_id is not None:
            parent = self._parents.get(item.parent_id) or await self._store.call(
                self._store.get_outbox, item.parent_id
            )
            if parent is not None and parent.status == "pending" and parent.ts is None:
                # Its parent is not posted yet: queued by a replica that went silent, it
                # comes with the next read of the backlog — read it now, and wait for it.
                self._parent_missing = True
                return None
            if parent is None or parent.status == "failed":
                await self._store.call(
                    self._store.mark_outbox,
                    [item.id],
                    "failed",
                    error="parent message was not posted",
                )
                return {item.id}
        settled = {item.id}
        posting: list[int] = []  # the items of a reply being posted
        try:
            if item.kind == "reaction":
                with contextlib.suppress(SlackApiError):  # already reacted, message gone: fine
                    await self._client.reactions_add(**item.payload)
                await self._store.call(self._store.mark_outbox, [item.id], "sent")
            elif item.kind == "parent":
                found = await self._posted_already(item, None)
                if found is not None:
                    item.ts, item.channel_id = found[0], found[1]
                else:
                    posting = [item.id]
                    self._unsure.add(item.id)
                    resp = await self._client.chat_postMessage(
                        channel=item.channel,
                        metadata={"event_type": _META, "event_payload": {"items": posting}},
                        **item.payload,
                    )
                    self._unsure.discard(item.id)
                    self._last_post[item.channel] = time.monotonic()
                    if not isinstance(resp.get("ts"), str):  # its replies would have no thread
                        raise ValueError("chat.postMessage answered ok without the message's ts")
                    item.ts, item.channel_id = resp["ts"], resp.get("channel")
                item.thread_ts = item.payload.get("thread_ts") or item.ts
                item.status = "sent"
                await self._store.call(
                    self._store.mark_outbox,
                    [item.id],
                    "sent",
                    ts=item.ts,
                    channel_id=item.channel_id,
                    thread_ts=item.thread_ts,
                )
                self._parents[item.id] = item
                if len(self._parents) > _PARENTS_KEPT:  # older runs' parents: the store has them
                    del self._parents[next(iter(self._parents))]
            elif item.kind == "update":
                assert parent is not None
                assert parent.ts is not None
                later = [
                    p
                    for p in pending
                    if p.kind == "update" and p.parent_id == item.parent_id and p.id != item.id
                ]
                if later:  # a newer state is queued: skip straight to it
                    await self._store.call(
                        self._store.mark_outbox, [item.id], "sent", error="superseded"
                    )
                    return settled
                await self._client.chat_update(
                    channel=parent.channel_id or item.channel, ts=parent.ts, **item.payload
                )
                await self._store.call(self._store.mark_outbox, [item.id], "sent")
            else:
                assert parent is not None
                assert parent.ts is not None
                found = await self._posted_already(item, parent)
                if found is not None:
                    ts, channel_id, held = found
                    mark = self._store.mark_outbox
                    await self._store.call(mark, held, "sent", ts=ts, channel_id=channel_id)
                    return set(held)
                batch = self._coalesce(item, pending)
                payload = (
                    batch[0].payload
                    if len(batch) == 1
                    else {"text": "\n".join(str(b.payload.get("text", "")) for b in batch)}
                )
                posting = [b.id for b in batch]
                self._unsure.update(posting)  # until Slack answers: it may post and not say so
                resp = await self._client.chat_postMessage(
                    channel=item.channel,
                    thread_ts=parent.thread_ts or parent.ts,
                    metadata={"event_type": _META, "event_payload": {"items": posting}},
                    **payload,
                )
                self._unsure.difference_update(posting)
                self._last_post[item.channel] = time.monotonic()
                settled = {b.id for b in batch if b.id}
                await self._store.call(
                    self._store.mark_outbox,
                    sorted(settled),
                    "sent",
                    ts=resp["ts"],
                    channel_id=resp.get("channel"),
                )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
            if exc.response.status_code < 500:  # refused: it was not posted
                self._unsure.difference_update(posting)
            if error in PERMANENT:
                log.error(
                    "slack refused a message",
                    item=item.id,
                    run_id=item.run_id,
                    channel=item.channel,
                    error=error,
                )
                await self._store.call(self._store.mark_outbox, [item.id], "failed", error=error)
                return settled
            return None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        except Exception as exc:  # an answer or a library fault no rule above foresaw
            # Retried like an outage a few times, then recorded as failed: one odd answer
            # must neither stop delivery (and with it the daemon) nor hold the queue forever.
            faults = self._faults[item.id] = self._faults.get(item.id, 0) + 1
            log.exception(
                "slack call failed unexpectedly", item=item.id, run_id=item.run_id, faults=faults
            )
            if faults < _MAX_FAULTS:
                return None
            del self._faults[item.id]
            await self._store.call(
                self._store.mark_outbox, [item.id], "failed", error=f"unexpected: {exc!r}"[:300]
            )
            return settled
        self._faults.pop(item.id, None)
        return settled

    async def _posted_already(
        self, item: OutboxItem, parent: OutboxItem | None
    ) -> tuple[str, str, list[int]] | None:
        """Where Slack has `item` already, if an attempt posted it without its outcome being
        recorded: the message's ts, its channel id and the items it holds — found in the
        thread (a reply) or among the channel's newest messages (a parent). Looked up only for
        an item whose post may have gone through (see the module's docstring); a lookup Slack
        refuses is logged, and the item posted."""
        unsure = item.id in self._unsure
        if not unsure and (item.id in self._from_here or item.run_id in self._looked_up):
            return None
        self._looked_up.append(item.run_id)  # only a run's first left item can be in flight
        self._unsure.discard(item.id)
        oldest = None
        if parent is not None:
            channel: str | None = parent.channel_id or item.channel
            oldest = await self._store.call(self._store.last_posted, item.run_id, item.id)
        else:
            channel = await self._store.call(self._store.channel_id_of, item.channel)
        if channel is None:
            return None  # no message of this install went there yet: nothing to find
        cursor = None
        try:
            for _ in range(_LOOKUP_PAGES):
                if parent is not None:
                    thread = parent.thread_ts or parent.ts
                    assert thread is not None  # a posted parent
                    resp = await self._client.conversations_replies(
                        channel=channel,
                        ts=thread,
                        oldest=oldest or thread,
                        inclusive=False,
                        include_all_metadata=True,
                        limit=200,
                        cursor=cursor,
                    )
                else:  # newest first
                    resp = await self._client.conversations_history(
                        channel=channel, include_all_metadata=True, limit=200, cursor=cursor
                    )
                for message in resp.get("messages") or []:
                    meta = message.get("metadata") or {}
                    held = (meta.get("event_payload") or {}).get("items") or []
                    if meta.get("event_type") == _META and item.id in held:
                        ids = sorted(int(i) for i in held)
                        log.warning(
                            "a message was posted but not recorded: recorded now",
                            run_id=item.run_id,
                            items=ids,
                        )
                        return str(message.get("ts")), channel, ids
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("not looked up: the message is posted", run_id=item.run_id, error=str(exc))
        return None

    @staticmethod
    def _coalesce(item: OutboxItem, pending: list[OutboxItem]) -> list[OutboxItem]:
        """`item` and the replies of the same run right after it, within Slack's limits."""
        batch = [item]
        size = len(str(item.payload.get("text", "")))
        start = pending.index(item) + 1
        for nxt in pending[start:]:
            if nxt.run_id != item.run_id:
                continue
            if nxt.kind != "reply" or "blocks" in nxt.payload or "blocks" in item.payload:
                break  # buttons and parent updates keep their own place in the order
            size += len(str(nxt.payload.get("text", "")))
            if len(batch) >= _MAX_COALESCED or size > _MAX_COALESCED_CHARS:
                break
            batch.append(nxt)
        return batch
