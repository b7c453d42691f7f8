"""What every event source hands the dispatcher, and how triggers are matched against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Incoming:
    """An event from outside, normalised.

    `key` makes delivery idempotent: an event whose key was stored before starts nothing.
    """

    source: str  # github | alertmanager | webhook | file
    type: str  # e.g. issues.opened, alert.firing, deploys, file.changed
    payload: dict[str, Any]
    key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

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
