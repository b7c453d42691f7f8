"""What people send a run — steering, decisions, pause, resume, cancel — taken to the run's
inbox wherever it is in this executor (queued, executing, or handed to its newest retry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import RunStateError
from ..runs import Cancel, Decision, Message, Pause, Resume, RunStatus, Steer

if TYPE_CHECKING:
    from ..runs import RunEvent
    from ..spec import Automation
    from ..store import Store
    from .admission import Admission
    from .lifecycle import RunLifecycle


class Messages:
    """The executor's inbound side (a part of `Executor`)."""

    _store: Store
    _active: dict[int, RunLifecycle]
    _admission: Admission

    async def _emit(self, run_id: int, event: RunEvent) -> None:
        raise NotImplementedError

    async def _finish(
        self, run_id: int, status: RunStatus, summary: str, automation: Automation | None
    ) -> None:
        raise NotImplementedError

    async def steer(self, run_id: int, text: str, by: str, ref: str | None = None) -> None:
        """Deliver steering text to a running run."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Steer(text=text, by=by, ref=ref))

    async def pause(self, run_id: int, by: str) -> None:
        """Suspend a running run until `resume`."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Pause(by=by))

    async def resume(self, run_id: int, by: str) -> None:
        """Continue a paused run."""
        run_id = await self._current(run_id)
        self._require_active(run_id).inbox.put(Resume(by=by))

    async def decide(
        self, run_id: int, approval_id: str | None, approved: bool, by: str, reason: str | None
    ) -> str:
        """Approve or deny a pending request (the oldest when `approval_id` is None)."""
        run_id = await self._current(run_id)
        active = self._require_active(run_id)
        approval_id = await self._pending_approval(run_id, approval_id)
        active.inbox.put(Decision(approval_id=approval_id, approved=approved, by=by, reason=reason))
        return approval_id

    async def _pending_approval(self, run_id: int, approval_id: str | None) -> str:
        """The pending approval a decision is for (the oldest when `approval_id` is None);
        RunStateError — saying who decided first, where someone did — when there is none."""
        pending = await self._store.call(self._store.approvals, run_id, "pending")
        if approval_id is None:
            if not pending:
                raise RunStateError(f"run {run_id} has no pending approval request")
            approval_id = pending[0].request_id
        elif approval_id not in {a.request_id for a in pending}:
            every = await self._store.call(self._store.approvals, run_id)
            decided = next((a for a in every if a.request_id == approval_id), None)
            if decided is not None and decided.decided_at is not None:
                # The first decision won (here, in Slack, on the page or from GitHub).
                raise RunStateError(
                    f"approval {approval_id!r} was already {decided.status} by "
                    f"{decided.decided_by} at {decided.decided_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            raise RunStateError(f"run {run_id} has no pending approval {approval_id!r}")
        return approval_id

    async def cancel(self, run_id: int, by: str, reason: str | None = None) -> None:
        """Cancel a queued or running run."""
        run_id = await self._current(run_id)
        if self._admission.remove(run_id):
            await self._emit(run_id, Message(text=f"cancelled by {by} before it started"))
            await self._finish(run_id, RunStatus.CANCELLED, f"cancelled by {by}", None)
            return
        self._require_active(run_id).inbox.put(Cancel(by=by, reason=reason))

    async def _current(self, run_id: int) -> int:
        """A run that is neither active nor queued hands over to its newest retry, so a reply
        or click meant for an attempt cut short by a restart reaches the attempt that runs."""
        if run_id in self._active or run_id in self._admission:
            return run_id
        current = await self._store.call(self._store.current_attempt, run_id)
        if current not in self._active and current not in self._admission:
            await self._store.call(self._store.get_run, current)  # no such run: RunNotFound
            raise RunStateError(f"run {current} is not running")
        return current

    def _require_active(self, run_id: int) -> RunLifecycle:
        active = self._active.get(run_id)
        if active is None:
            if run_id in self._admission:
                raise RunStateError(f"run {run_id} is queued and has not started yet")
            raise RunStateError(f"run {run_id} is not running")
        return active
