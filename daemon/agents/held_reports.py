"""Reports held back while a model request is on its way (the built-in loop's speed-up)."""

from __future__ import annotations

from collections.abc import Callable

from ..runs import ApprovalRequest, Finished, RunEvent


class HeldReports:
    """Passes a run's events on to `report`, except while holding.

    The built-in loop holds what the turn's last tool reported while the next model request
    is built and sent, and releases it once the request is written: reporting it (the store,
    Slack, the console) then happens while the model thinks, instead of delaying the request
    by that much on every step. A request for approval or the run's end is never held back,
    nor is anything behind it: it releases what is held, in order, and ends the holding.
    """

    def __init__(self, report: Callable[[RunEvent], None]) -> None:
        self._report = report
        self._held: list[RunEvent] | None = None

    @property
    def holding(self) -> bool:
        """True between `hold` and the next `release`."""
        return self._held is not None

    def hold(self) -> None:
        """Hold events from now until `release`."""
        if self._held is None:
            self._held = []

    def put(self, event: RunEvent) -> None:
        """Report `event` now, or keep it for the next `release`."""
        if self._held is None or isinstance(event, ApprovalRequest | Finished):
            self.release()
            self._report(event)
        else:
            self._held.append(event)

    def release(self) -> None:
        """Report what is held, in order, and stop holding."""
        held, self._held = self._held, None
        for event in held or ():
            self._report(event)
