"""What a daemon does at start with the runs a previous one left executing: it kills their
processes, commits what each changed on its branch, ends each as its journal says (a script
that finished meanwhile) or as interrupted, and hands back the runs still queued."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog

from .. import workspace
from ..agents import discard_journal, kill_orphans, recorded
from ..config import StateLayout
from ..runs import EXECUTING, Message, RunStatus
from ..store import RunRow, Store
from .lifecycle import Emit, RunLifecycle

log = structlog.get_logger(__name__)

Finish = Callable[[int, RunStatus, str], Awaitable[None]]


async def recover(
    store: Store,
    state: StateLayout,
    emit: Emit,
    finish: Finish,
    *,
    live: Callable[[], Awaitable[set[str]]] | None = None,
) -> list[RunRow]:
    """End every run the store says is executing whose daemon is gone — none of its own, it
    is starting; none of a live replica's (`live`: their ids) — and clean what they left; the
    runs still queued, oldest first."""
    stale = await store.call(
        store.list_runs, statuses=list(EXECUTING), limit=10_000, oldest_first=True
    )
    alive = await live() if live is not None else set()
    for run in stale:
        assert run.id is not None
        if run.owner is not None and run.owner in alive:
            continue  # another replica's, and it is alive: not this daemon's to touch
        await _end_left_run(run.id, state, emit, finish)
    salvaged = await workspace.salvage_all(state.worktrees)
    await workspace.discard_spares(state.spares)
    if salvaged:
        log.warning("removed worktrees left by a previous daemon", count=len(salvaged))
    return await store.call(
        store.list_runs, statuses=[RunStatus.QUEUED], limit=100_000, oldest_first=True
    )


async def recover_gone(
    store: Store,
    state: StateLayout,
    emit: Emit,
    finish: Finish,
    *,
    me: str,
    live: set[str],
    executing_here: set[int],
    branch_of: Callable[[RunRow], str | None] = lambda run: None,
) -> list[int]:
    """While this daemon runs: end the runs of replicas that stopped beating (claimed first, so
    one live replica recovers each); the ids recovered."""
    stale = await store.call(
        store.list_runs, statuses=list(EXECUTING), limit=10_000, oldest_first=True
    )
    recovered = []
    for run in stale:
        assert run.id is not None
        if run.id in executing_here or run.owner is None or run.owner in live or run.owner == me:
            continue
        if not await store.call(store.claim_run, run.id, run.owner, me):
            continue  # another replica claimed it first
        log.warning("recovering the run of a replica that stopped beating", run_id=run.id,
                    replica=run.owner)  # fmt: skip
        text = f"its daemon ({run.owner}) stopped beating" + left_on(branch_of(run), run.owner)
        await emit(run.id, Message(level="warning", text=text))
        await finish(run.id, RunStatus.INTERRUPTED, "its daemon stopped beating")
        recovered.append(run.id)
    return recovered


def left_on(branch: str | None, replica: str | None) -> str:
    """What a run's thread says of the work an attempt that a gone replica executed left: on
    its branch, in that replica's worktree until it starts again and commits it there."""
    if branch is None:
        return ""
    return f"; what it changed stays on branch {branch} ({replica} commits it when it starts again)"


async def _end_left_run(run_id: int, state: StateLayout, emit: Emit, finish: Finish) -> None:
    """End one run left executing: as its script said, when it finished on its own; else
    interrupted. What it changed is committed on its branch first, and the thread says where."""
    # Its processes carry the folder they worked in: a worktree, or a plain folder.
    killed = await asyncio.to_thread(kill_orphans, *state.run_dirs(run_id))
    log.warning("run was left running by a previous daemon", run_id=run_id, killed=killed)
    journal = state.journal(run_id)
    # A script that went on and finished while no daemon listened left its outcome in its
    # journal: the run ends as the script said, and is not run again.
    said = None if killed else await asyncio.to_thread(recorded, journal)
    kept = await workspace.salvage(state.worktrees / str(run_id), ended=said is not None)
    on = f"; what it changed is committed on branch {kept}" if kept else ""
    if said is None:
        text = "the daemon stopped while this run was active" + on
        await emit(run_id, Message(level="warning", text=text))
        await finish(run_id, RunStatus.INTERRUPTED, "the daemon stopped during the run")
    else:
        await emit(
            run_id,
            Message(
                level="warning",
                text="the daemon stopped during this run; the script went on and "
                f"finished (exit code {said.code}, {said.lines} lines of output): "
                "its outcome is recorded from its journal" + on,
            ),
        )
        for artifact in said.artifacts:
            await emit(run_id, artifact)
        await finish(run_id, said.finished.status, said.finished.summary)
    await asyncio.to_thread(discard_journal, journal)


async def drop_lost(store: Store, active: Mapping[int, RunLifecycle], me: str) -> list[int]:
    """Stop the runs executing here that another replica took over while this one was silent
    (partitioned, stalled): every effect of a run comes from its current owner only, so each
    is marked lost (nothing more of it is reported here) and its agent stopped."""
    dropped = []
    for run_id, lifecycle in list(active.items()):
        run = await store.call(store.get_run, run_id)
        if run.owner in (None, me) or lifecycle.lost:
            continue
        log.warning("a run of this replica was taken over", run_id=run_id, by=run.owner)
        lifecycle.lost = True
        dropped.append(run_id)
        if lifecycle.agent is not None:
            await lifecycle.agent.cancel()
    return dropped
