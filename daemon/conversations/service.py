"""GitHub conversations: an issue or pull request where people address nightshift.

The dispatcher stores each mention's event and hands it here (`Mentioned`); here it is
handled in order per conversation (`owner/repo#number`), one at a time: who asked is checked
against GitHub's collaborator permission (write, maintain or admin; cached briefly), never
the payload's `author_association`; a refusal is answered once per person and conversation
an hour (remembered in the store, so across restarts and replicas); a heard mention gets 👀,
then decides the conversation's pending approval (`approve` / `deny <reason>`), steers its
active run, or starts its next run — one unfinished run per conversation and automation,
also when two replicas hear two mentions of one conversation at once (the store keeps it so).
A loop breaker stops listening in a conversation where nightshift wrote too much too fast;
what it counts and whether it holds are in the store, shared by the replicas.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog

from ..durations import format_duration
from ..errors import NightshiftError
from ..executor import Executor
from ..github import GitHubClient
from ..loader import Catalog
from ..runs import UNFINISHED
from ..sources import Addressed, visible_text
from ..store import Decision, NewRun, Store, cost_capped, utcnow

log = structlog.get_logger(__name__)

WRITERS = frozenset({"admin", "maintain", "write"})
LOOP_COMMENTS = 10  # nightshift's own new comments in one conversation …
LOOP_WINDOW = timedelta(minutes=10)  # … within this long trip the loop breaker
_REACT_ON = {"comment": "issue_comment", "review_comment": "review_comment", "body": "issue"}


@dataclass(frozen=True)
class Mentioned:
    """A stored mention for an automation: who asked what, and the run it would start."""

    automation: str
    addressed: Addressed
    run: NewRun
    event_id: int | None

    def run_decision(self) -> Decision:
        """The decision that starts the conversation's run (what `nightshift test` shows)."""
        asked = self.addressed
        detail = f"for {asked.author}, if they have write access to {asked.repository}"
        return Decision(self.automation, "matched", detail, run=self.run)


class Conversations:
    """Handles mentions, in order per conversation."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        github: Callable[[], GitHubClient | None],
        catalog: Callable[[], Catalog],
        *,
        permission_ttl: float = 60.0,
        refusal_every: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._executor = executor
        self._github = github
        self._catalog = catalog
        self._permission_ttl = permission_ttl
        self._refusal_every = refusal_every
        self._clock = clock
        self._queues: dict[str, asyncio.Queue[Mentioned]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._permissions: dict[tuple[str, str], tuple[float, str]] = {}

    def submit(self, mentioned: Mentioned) -> None:
        """Queue a mention behind the others of its conversation (returns at once)."""
        key = mentioned.addressed.conversation
        queue = self._queues.setdefault(key, asyncio.Queue())
        queue.put_nowait(mentioned)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._work(key), name=f"conversation {key}")

    async def settle(self, timeout: float = 30) -> None:
        """Wait (bounded) until every mention submitted so far is handled."""
        busy = [w for w in self._workers.values() if not w.done()]
        if busy:
            await asyncio.wait(busy, timeout=timeout)

    @property
    def busy(self) -> int:
        """How many conversations have mentions being handled now."""
        return len(self._workers)

    async def _work(self, key: str) -> None:
        queue = self._queues[key]
        while not queue.empty():
            mentioned = queue.get_nowait()
            try:
                await self._handle(mentioned)
            except Exception:  # one mention's failure must not stop its conversation
                log.exception("mention not handled", conversation=key)
        # Idle: forgotten (a daemon hears many conversations in its life). No mention can
        # arrive between the empty queue and here: nothing awaits in between.
        del self._queues[key], self._workers[key]

    async def wrote(self, conversation: str) -> None:
        """Count a new comment nightshift wrote in `conversation` (the loop breaker's, kept in
        the store: every replica's comments count)."""
        store = self._store
        await store.call(store.note_comment, conversation, utcnow(), LOOP_WINDOW)

    async def _handle(self, m: Mentioned) -> None:
        asked = m.addressed
        if await self._broken(asked):
            return
        client = self._github()
        if client is None:
            log.error(
                "mention not heard: github.token is not set, so who asked cannot be checked",
                conversation=asked.conversation,
            )
            return
        role = await self._role(client, asked.repository, asked.author)
        if role not in WRITERS:
            await self._refuse(client, asked, role)
            return
        where = _REACT_ON.get(asked.place)
        target = asked.number if asked.place == "body" else asked.comment_id
        if where is not None and target is not None:
            await asyncio.to_thread(client.react, asked.repository, where, target, "eyes")
        by = f"github:{asked.author}"
        active = await self._active_run(m.automation, asked.conversation)
        command = asked.mention.command
        try:
            if command == "feedback":
                text = await self._feedback(client, asked)
                if asked.made_by is not None and asked.made_by in self._executor.active_ids:
                    await self._executor.steer(asked.made_by, text, by, ref=_ref(asked))
                elif active is not None:
                    await self._executor.steer(active, text, by, ref=_ref(asked))
                else:
                    raise NightshiftError(
                        f"the run that made this pull request (run {asked.made_by}) has ended; "
                        "mention @nightshift with what to do to start the next one"
                    )
            elif command in ("approve", "deny") and active is not None:
                approval = asked.mention.argument if command == "approve" else None
                reason = asked.mention.argument if command == "deny" else None
                await self._executor.decide(
                    active, approval or None, command == "approve", by, reason
                )
            elif active is not None:
                await self._executor.steer(active, asked.mention.request, by, ref=_ref(asked))
            elif not await self._start(m):
                # Another replica started the conversation's run a moment ago: it is steered.
                active = await self._active_run(m.automation, asked.conversation)
                if active is None:
                    raise NightshiftError("the conversation's run ended as this was asked")
                await self._executor.steer(active, asked.mention.request, by, ref=_ref(asked))
        except NightshiftError as exc:
            log.warning("mention could not act", conversation=asked.conversation, error=str(exc))
            await asyncio.to_thread(
                client.comment, asked.repository, asked.number, f"@{asked.author} {exc}"
            )
            await self.wrote(asked.conversation)

    async def _broken(self, asked: Addressed) -> bool:
        """True while the loop breaker holds `asked`'s conversation: nightshift wrote more than
        `LOOP_COMMENTS` comments there within `LOOP_WINDOW`. It says so once, then listens to
        nothing there until the window has passed."""
        key, now, store = asked.conversation, utcnow(), self._store
        until = await store.call(store.held_until, key)
        if until is not None and until > now:
            return True
        recent = await store.call(store.comments_since, key, now - LOOP_WINDOW)
        if recent <= LOOP_COMMENTS:
            return False
        if not await store.call(store.hold_conversation, key, now, now + LOOP_WINDOW):
            return True  # another replica tripped it this moment, and says so
        minutes = int(LOOP_WINDOW.total_seconds() // 60)
        log.warning("loop breaker tripped", conversation=key, comments=recent)
        client = self._github()
        if client is not None:
            text = (
                f"nightshift stops answering here for {minutes} minutes: it wrote "
                f"{recent} comments in this conversation within {minutes} minutes, "
                "which looks like a loop."
            )
            await asyncio.to_thread(client.comment, asked.repository, asked.number, text)
        return True

    async def _feedback(self, client: GitHubClient, asked: Addressed) -> str:
        """A submitted review as one message: its text, then each inline comment with its
        file, line and the end of its hunk."""
        assert asked.comment_id is not None
        comments = await asyncio.to_thread(
            client.review_comments, asked.repository, asked.number, asked.comment_id
        )
        count = f"{len(comments)} comment{'s' if len(comments) != 1 else ''}"
        parts = [f"Review from {asked.author} on {asked.conversation} ({count})."]
        if asked.mention.request:
            parts.append(asked.mention.request)
        for n, c in enumerate(comments, 1):
            line = c.get("line") or c.get("original_line") or "?"
            hunk = "\n".join(str(c.get("diff_hunk") or "").splitlines()[-8:])
            body, _ = visible_text(str(c.get("body") or ""))
            parts.append(
                f"{n}. {c.get('path')}, line {line}:\n```diff\n{hunk}\n```\n{body.strip()}"
            )
        return "\n\n".join(parts)

    async def _role(self, client: GitHubClient, repo: str, user: str) -> str:
        key = (repo, user.lower())
        now = self._clock()
        cached = self._permissions.get(key)
        if cached is not None and now - cached[0] < self._permission_ttl:
            return cached[1]
        role = await asyncio.to_thread(client.permission, repo, user)
        self._permissions[key] = (now, role)
        return role

    async def _refuse(self, client: GitHubClient, asked: Addressed, role: str) -> None:
        log.info("mention refused", conversation=asked.conversation, author=asked.author, role=role)
        every = timedelta(seconds=self._refusal_every)
        claim = self._store.claim_refusal
        if not await self._store.call(claim, asked.conversation, asked.author, every):
            return  # told already this hour: a second reply would only be noise
        text = (
            f"@{asked.author} only people with write access to {asked.repository} can ask "
            "nightshift here."
        )
        await asyncio.to_thread(client.comment, asked.repository, asked.number, text)
        await self.wrote(asked.conversation)

    async def _active_run(self, automation: str, conversation: str) -> int | None:
        unfinished = [s.value for s in UNFINISHED]
        runs = await self._store.call(
            self._store.list_runs, automation=automation, statuses=unfinished, limit=200
        )
        return next((r.id for r in runs if r.key == conversation), None)

    async def _from_fork(self, asked: Addressed) -> bool:
        """Whether a pull request's head lives in another repository (a fork): its runs are
        untrusted. An issue is no fork's; a pull request GitHub cannot tell about counts as one."""
        if not asked.pull_request:
            return False
        client = self._github()
        if client is None:
            return True
        try:
            pull = await asyncio.to_thread(client.pull, asked.repository, asked.number)
        except NightshiftError:
            return True
        head = pull.head.repo.full_name if pull.head.repo is not None else ""
        return head.lower() != asked.repository.lower()

    async def _start(self, m: Mentioned) -> bool:
        """Start the conversation's next run; False when another replica just started one
        (a conversation has one unfinished run per automation)."""
        key = m.addressed.conversation
        automation = self._catalog().automations.get(m.automation)
        if automation is None:
            raise NightshiftError(f"automation {m.automation!r} is no longer loaded")
        earlier = [
            r
            for r in await self._store.call(
                self._store.list_runs, automation=m.automation, limit=500
            )
            if r.key == key
        ]
        throttle = automation.policies.throttle
        if throttle is not None:
            since = utcnow() - throttle.per
            recent = [r for r in earlier if r.created_at >= since]
            if len(recent) >= throttle.max_runs:
                raise NightshiftError(
                    f"this conversation had {len(recent)} runs in the last "
                    f"{format_duration(throttle.per)} (policies.throttle); ask again later"
                )
        cap = automation.policies.cost_cap
        if cap is not None:
            spent = await self._store.call(self._store.spent, m.automation, key, utcnow() - cap.per)
            if spent >= cap.max_usd:
                raise NightshiftError(
                    f"{cost_capped(key, spent, cap.max_usd, cap.per)}; ask again later"
                )
        inputs = dict(m.run.inputs)
        skill = self._catalog().skills.get(automation.skill)
        ended = next((r for r in earlier if r.finished_at is not None), None)
        if ended is not None and skill is not None and "previous_summary" in skill.manifest.inputs:
            # The conversation's last run, handed to the next one.
            inputs["previous_summary"] = f"run {ended.id} {ended.status}: {ended.summary}"
        untrusted = await self._from_fork(m.addressed)
        new = NewRun(
            automation=m.run.automation,
            trigger=m.run.trigger,
            inputs=inputs,
            key=key,
            untrusted=untrusted,
        )
        run = await self._store.call(self._store.create_run_once, new, m.event_id)
        if run is None:
            return False
        self._executor.enqueue(run)
        log.info(
            "mention started a run",
            conversation=m.addressed.conversation,
            run_id=run.id,
            by=m.addressed.author,
            untrusted=untrusted,
        )
        return True


def _ref(asked: Addressed) -> str:
    """Where a steer came from, for its acknowledgement: github:<conversation>:<place>:<id>."""
    return f"github:{asked.conversation}:{asked.place}:{asked.comment_id or 0}"
