"""What every event source hands the dispatcher, and how triggers are matched against it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..spec import Automation
    from ..store import RunRow


@dataclass(frozen=True)
class Incoming:
    """An event from outside, normalised.

    `key` makes delivery idempotent: an event whose key was stored before starts nothing.
    `identity` does the same for what the payload says it is, where it says so (a captured
    delivery re-sent under a new delivery id).
    """

    source: str  # github | alertmanager | webhook | file
    type: str  # e.g. issues.opened, alert.firing, deploys, file.changed
    payload: dict[str, Any]
    key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # the payload's JSON text as received, if storable as is
    identity: str | None = None

    def template_view(self) -> dict[str, Any]:
        """What `when` and input templates see as `event`."""
        return {
            "source": self.source,
            "type": self.type,
            "key": self.key,
            "payload": self.payload,
            **self.meta,
        }


GUARD = "guard: "
"""Prefix of a non-match caused by a loop guard (the event came from nightshift itself)."""


def stored_text(body: bytes) -> str | None:
    """A JSON body's text, when the store can keep it as received instead of serialising
    the parsed payload again (None: it cannot).

    Kept as is only without `\\u` and `\\/` escapes: then every string in it is spelled as
    the store's own serialisation spells it, so the redactor finds each secret value in the
    text exactly where it would find it in the re-serialised payload. Call it only with a
    body that parsed as JSON (which also proves it is UTF-8).
    """
    # Walk the escapes with find (memchr): `in` with a two-byte needle costs 30 times more.
    at = body.find(b"\\")
    while at != -1:
        if body[at + 1 : at + 2] in (b"u", b"/"):
            return None
        at = body.find(b"\\", at + 2)
    return body.decode()


class Dispatching(Protocol):
    """Where the live sources (schedules, Slack) hand what they received: the dispatcher,
    seen from below it."""

    async def manual(
        self,
        name: str,
        inputs: dict[str, Any],
        by: str,
        origin: dict[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> RunRow:
        """Start an automation by hand."""
        ...

    async def retry(self, run_id: int, by: str, origin: dict[str, Any] | None = None) -> RunRow:
        """Run a finished run's automation again with its inputs."""
        ...

    async def fire(
        self, automation: Automation, trigger_key: str, slot: datetime, late: bool
    ) -> RunRow | None:
        """Fire one schedule slot."""
        ...

    async def skip(
        self, name: str, trigger_key: str, slots: Sequence[datetime], reason: str
    ) -> None:
        """Record schedule slots that were not fired, and why."""
        ...
