"""One status comment per conversation run, kept current by editing it in place: the steps
so far as a short checklist, a link to the run's page where the command center has a public
address, the approval it waits for, and its end. Steering the agent took is acknowledged
with a reaction on the comment that carried it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from ..bus import EventBus
from ..github import GitHubClient
from ..runs import (
    ApprovalDecision,
    ApprovalRequest,
    Artifact,
    Envelope,
    Finished,
    RunEvent,
    RunStatus,
    SteerReceived,
    Step,
    envelope_of,
)
from ..store import Store

log = structlog.get_logger(__name__)

STEPS_SHOWN = 12
TRIGGER = "github_mention"  # the trigger prefix of a conversation's runs


@dataclass
class _Shown:
    """What a run's status comment says, and where it is."""

    repository: str
    number: int
    first: int  # the first attempt of the run's chain: its comment is kept under it
    comment_id: int | None = None
    steps: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # approval id -> what it asks
    links: list[str] = field(default_factory=list)
    end: str | None = None
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    writer: asyncio.Task[None] | None = None


def _apply(shown: _Shown, event: RunEvent) -> bool:
    """Take `event` into what the comment shows; whether that changed."""
    if isinstance(event, Step):
        shown.steps.append(event.title[:200])
    elif isinstance(event, ApprovalRequest):
        shown.waiting[event.id] = f"{event.action}: {event.description}"[:300]
    elif isinstance(event, ApprovalDecision):
        shown.waiting.pop(event.id, None)
        verdict = "approved" if event.approved else "denied"
        shown.steps.append(f"approval {event.id} {verdict} by {event.by}")
    elif isinstance(event, Artifact) and event.url:
        shown.links.append(f"[{event.title}]({event.url})")
    elif isinstance(event, Finished):
        mark = "✅" if event.status == RunStatus.SUCCEEDED else "❌"
        shown.waiting.clear()
        shown.end = f"{mark} **{event.status}**: {event.summary}"[:2000]
    else:
        return False
    return True


def conversation_of(key: str | None) -> tuple[str, int] | None:
    """(owner/repo, number) of a conversation key `owner/repo#number`."""
    if not key or "#" not in key:
        return None
    repo, _, number = key.rpartition("#")
    return (repo, int(number)) if number.isdigit() and "/" in repo else None


def render(run_id: int, shown: _Shown, page: str | None) -> str:
    """The status comment's Markdown."""
    head = f"**nightshift** — run {run_id}"
    if page:
        head += f" · [follow it live]({page})"
    lines = [head, ""]
    earlier = len(shown.steps) - STEPS_SHOWN
    if earlier > 0:
        lines.append(f"- [x] … {earlier} earlier step{'s' if earlier != 1 else ''}")
    steps = shown.steps[-STEPS_SHOWN:]
    for index, step in enumerate(steps):
        done = shown.end is not None or index < len(steps) - 1
        lines.append(f"- [{'x' if done else ' '}] {step}")
    for asks in shown.waiting.values():
        lines += [
            "",
            f"⏳ **Waiting for approval**: {asks} — reply `@nightshift approve` or "
            "`@nightshift deny <reason>`",
        ]
    if shown.links:
        lines += ["", *(f"🔗 {link}" for link in shown.links)]
    if shown.end is not None:
        lines += ["", shown.end]
    return "\n".join(lines)


class StatusComments:
    """Keeps the status comment of each conversation run (a bus subscriber)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        github: Callable[[], GitHubClient | None],
        *,
        page_url: Callable[[int], str | None] = lambda run_id: None,
        every: float = 2.0,
        wrote: Callable[[str], Awaitable[None]] | None = None,
        holds: Callable[[int], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._github = github
        self._page_url = page_url
        self._every = every  # seconds between two edits of one comment (GitHub paces writes)
        self._wrote = wrote  # counts each new comment for the conversation's loop breaker
        self._holds = holds  # whether this replica holds the run (only its holder writes)
        self._shown: dict[int, _Shown] = {}
        self._others: set[int] = set()  # runs that are no conversation's

    @property
    def following(self) -> int:
        """How many runs it keeps something of now (each until its end is handled)."""
        return len(self._shown) + len(self._others)

    async def run(self) -> None:
        """Follow every run's events until cancelled."""
        with self._bus.subscribe() as sub:
            while True:
                env = await sub.queue.get()
                try:
                    await self._handle(env)
                except Exception:  # a reporter's fault must not stop the others
                    log.exception("status comment not updated", run_id=env.run_id)

    async def _handle(self, env: Envelope) -> None:
        if env.run_id in self._others:
            if isinstance(env.event, Finished):  # remembered while it runs, not for ever
                self._others.discard(env.run_id)
            return
        shown = self._shown.get(env.run_id)
        if shown is None:
            run = await self._store.call(self._store.get_run, env.run_id)
            where = conversation_of(run.key) if run.trigger.startswith(TRIGGER) else None
            if where is None or self._github() is None:
                if not isinstance(env.event, Finished):
                    self._others.add(env.run_id)
                return
            shown = self._shown[env.run_id] = await self._open(env, *where)
            shown.writer = asyncio.create_task(self._write(env.run_id, shown))
        if isinstance(env.event, SteerReceived):
            await self._acknowledge(shown, env.event)
        elif _apply(shown, env.event):
            shown.dirty.set()

    async def _open(self, env: Envelope, repository: str, number: int) -> _Shown:
        """What a run's status comment is to show: a new comment, or — for a retry, or a run
        this process did not see begin — the comment its chain already keeps, its earlier
        attempts and events replayed from the store."""
        store = self._store
        first = await store.call(store.first_attempt, env.run_id)
        kept = await store.call(store.status_comment, first)
        shown = _Shown(repository, number, first=first)
        if kept is None:
            return shown
        shown.comment_id = kept.comment_id
        for attempt in await store.call(store.attempts, env.run_id):
            assert attempt.id is not None
            for row in await store.call(store.run_events, attempt.id):
                if attempt.id == env.run_id and row.seq >= env.seq:
                    break
                _apply(shown, envelope_of(row).event)
            if attempt.id != env.run_id:  # an earlier attempt's end is a step of the chain
                shown.steps.append(f"attempt {attempt.attempt} (run {attempt.id}) ended")
                shown.end = None
                shown.waiting.clear()
        return shown

    async def _acknowledge(self, shown: _Shown, event: SteerReceived) -> None:
        # ref: github:<owner/repo>#<number>:<place>:<comment id>
        parts = (event.ref or "").split(":")
        client = self._github()
        if len(parts) != 4 or parts[0] != "github" or not parts[3].isdigit() or client is None:
            return
        where = {"comment": "issue_comment", "review_comment": "review_comment"}.get(parts[2])
        if where is not None:
            await asyncio.to_thread(client.react, shown.repository, where, int(parts[3]), "rocket")

    async def _write(self, run_id: int, shown: _Shown) -> None:
        """Post the comment, then edit it whenever something changed (at most every
        `every` seconds), until the run's end is written."""
        client = self._github()
        assert client is not None
        while True:
            await shown.dirty.wait()
            shown.dirty.clear()
            body = render(run_id, shown, self._page_url(run_id))
            if self._holds is not None and not await self._holds(run_id):
                log.warning("status comment not written: the run belongs to another replica now")
                self._shown.pop(run_id, None)
                return
            try:
                if shown.comment_id is None:
                    made = await asyncio.to_thread(
                        client.comment, shown.repository, shown.number, body
                    )
                    shown.comment_id = made.id
                    if self._wrote is not None:
                        await self._wrote(f"{shown.repository}#{shown.number}")
                    await self._store.call(
                        self._store.keep_status_comment,
                        shown.first,
                        shown.repository,
                        shown.number,
                        made.id,
                    )
                else:
                    await asyncio.to_thread(
                        client.edit_comment, shown.repository, shown.comment_id, body
                    )
            except Exception as exc:  # GitHub down: the next change tries again
                log.warning("status comment not written", run_id=run_id, error=str(exc))
            if shown.end is not None and not shown.dirty.is_set():
                self._shown.pop(run_id, None)
                return
            await asyncio.sleep(self._every)
