"""One run's git worktree, owned from its making to its removal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from .. import workspace
from ..config import StateLayout
from ..errors import NightshiftError
from ..runs import Artifact, Message, RunEvent

log = structlog.get_logger(__name__)


class RunTree:
    """A run's worktree: made while the agent starts (the agent waits on `ready`), its
    changes committed and kept as a diff when the run ends (`close`), the folder removed and
    a spare made for the next run once the run is reported finished (`clean_up`)."""

    def __init__(
        self,
        run_id: int,
        repo: Path,
        base: str | None,
        state: StateLayout,
        emit: Callable[[int, RunEvent], Awaitable[None]],
        started: asyncio.Event,
    ) -> None:
        self.run_id, self.repo, self.base = run_id, repo, base
        self._state = state
        self._emit = emit
        self._started = started  # the run's log opens with `started`: the tree's message after
        self._made = asyncio.Event()
        self._making: asyncio.Task[workspace.Worktree] | None = None
        self._leftover: tuple[workspace.Worktree, workspace.Outcome] | None = None

    @property
    def path(self) -> Path:
        """The folder the run works in."""
        return self._state.worktrees / str(self.run_id)

    def start(self, automation: str) -> None:
        """Start making the worktree; `close` ends it whatever ends the run."""
        self._making = asyncio.create_task(self._make(automation))

    async def _make(self, automation: str) -> workspace.Worktree:
        tree = await workspace.create(
            self.repo, self._state.worktrees, automation, self.run_id, self.base, self._state.spares
        )
        self._made.set()  # the agent may start; the message below need not hold it up
        await self._started.wait()
        await self._emit(
            self.run_id, Message(text=f"working on branch {tree.branch} in {tree.path}")
        )
        return tree

    async def ready(self) -> None:
        """Wait for the folder (not for the message that reports it); a failure to make it
        is the run's failure."""
        making = self._making
        assert making is not None
        if not self._made.is_set():
            waiter = asyncio.ensure_future(self._made.wait())
            try:  # asyncio.wait never cancels `making`, whoever cancels this wait
                await asyncio.wait({making, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        if self._made.is_set():
            return
        try:
            making.result()
        except NightshiftError as exc:
            raise workspace.WorkspaceError(f"cannot make the workspace: {exc}") from None

    async def failure(self) -> BaseException | None:
        """Why the worktree could not be made, once its making is over (None: it was)."""
        if self._making is None:
            return None
        await asyncio.wait({self._making})
        return None if self._making.cancelled() else self._making.exception()

    async def diff(self) -> str | None:
        """What the run changed so far, against its base; None until the worktree is made."""
        making = self._making
        if making is None or not making.done() or making.cancelled() or making.exception():
            return None
        return await workspace.live_diff(making.result())

    async def close(self, keep: bool) -> None:
        """Keep what the run changed on its branch, with the diff as an artifact; never leave
        a half-made worktree behind (whatever ended the run, a bug included)."""
        making, self._making = self._making, None
        if making is None:
            return
        self._started.set()  # whatever ended the run, the tree's message may follow now
        await asyncio.wait({making})
        if making.cancelled() or making.exception() is not None:
            return
        tree = making.result()
        try:
            outcome = await workspace.finish(tree, self.run_id)
        except NightshiftError as exc:
            await self._emit(self.run_id, Message(level="warning", text=f"workspace: {exc}"))
            return
        if outcome.stat:
            last = outcome.stat.splitlines()[-1].strip()
            await self._emit(
                self.run_id,
                Artifact(kind="diff", title=f"{tree.branch}: {last}", content=outcome.diff),
            )
        if not keep:
            self._leftover = (tree, outcome)

    async def clean_up(self, *, spare: bool) -> None:
        """After the run is reported finished: remove the folder (unless kept) and, with
        `spare`, make the repository's spare for its next run."""
        if self._leftover is not None:
            await workspace.remove(*self._leftover)
        if spare:
            try:
                await workspace.prepare_spare(self.repo, self._state.spares, self.base)
            except (NightshiftError, OSError) as exc:  # the next run makes its own worktree
                log.warning("could not prepare a spare worktree", error=str(exc))
