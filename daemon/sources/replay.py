"""Events from saved payloads, for dry runs (`nightshift test`) — the same normalisation the
live endpoints use, without the signature check."""

from __future__ import annotations

from typing import Any

from ..config import SourcesConfig
from ..errors import NightshiftError
from . import alertmanager, github, webhooks
from .incoming import Incoming

KINDS = ("github", "alertmanager", "webhook", "file")


def incomings_from_payload(
    source: str,
    payload: dict[str, Any],
    sources: SourcesConfig,
    *,
    github_event: str | None = None,
    webhook: str | None = None,
) -> list[Incoming]:
    """The events a live delivery of `payload` to `source` would become."""
    if source == "github":
        if not github_event:
            raise NightshiftError("--github-event is needed for GitHub payloads (e.g. issues)")
        return [github.normalise(github_event, "dry-run", payload)]
    if source == "alertmanager":
        return alertmanager.split(payload)
    if source == "webhook":
        name = webhook or "webhook"
        return [webhooks.normalise(name, sources.webhooks.get(name), payload, {})]
    if source == "file":
        return [Incoming("file", "file.changed", payload)]
    raise NightshiftError(f"unknown source {source!r} (one of {', '.join(KINDS)})")
