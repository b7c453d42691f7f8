"""Events from saved payloads, for dry runs (`nightshift test`) — the same normalisation the
live endpoints use, without the signature check."""

from __future__ import annotations

from typing import Any

from ..config import SourcesConfig
from ..errors import NightshiftError
from . import alertmanager, github, webhooks
from .incoming import Incoming

KINDS = ("github", "alertmanager", "webhook", "file")


# The payload's top-level fields that name its X-GitHub-Event, most specific first: a review
# comment carries `pull_request` too, an issue comment `issue`, a deployment `workflow_run`.
_GITHUB_SHAPES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"comment", "pull_request"}), "pull_request_review_comment"),
    (frozenset({"review", "pull_request"}), "pull_request_review"),
    (frozenset({"thread", "pull_request"}), "pull_request_review_thread"),
    (frozenset({"comment", "discussion"}), "discussion_comment"),
    (frozenset({"comment", "issue"}), "issue_comment"),
    (frozenset({"workflow_job"}), "workflow_job"),
    (frozenset({"deployment_status"}), "deployment_status"),
    (frozenset({"deployment"}), "deployment"),
    (frozenset({"pull_request"}), "pull_request"),
    (frozenset({"issue"}), "issues"),
    (frozenset({"ref", "commits", "before", "after"}), "push"),
    (frozenset({"zen", "hook_id"}), "ping"),
)
# Events whose payload carries an object named as the event itself.
_SELF_NAMED = (
    "workflow_run", "workflow_job", "check_run", "check_suite", "release", "discussion",
    "label", "milestone", "package", "registry_package",
    "repository_vulnerability_alert", "security_advisory", "code_scanning_alert",
    "secret_scanning_alert", "dependabot_alert", "branch_protection_rule", "deploy_key",
    "merge_group", "sponsorship", "project", "project_card", "project_column",
    "marketplace_purchase", "installation_target", "workflow_dispatch",
)  # fmt: skip


def guess_github_event(payload: dict[str, Any]) -> str | None:
    """The X-GitHub-Event a payload was most likely delivered with (None when unsure)."""
    keys = set(payload) if isinstance(payload, dict) else set()
    shaped = next((event for shape, event in _GITHUB_SHAPES if shape <= keys), None)
    return shaped or next((event for event in _SELF_NAMED if event in keys), None)


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
            raise NightshiftError(
                "--github-event is needed for this GitHub payload (its fields do not say; "
                "e.g. issues)"
            )
        return [github.normalise(github_event, "dry-run", payload)]
    if source == "alertmanager":
        return alertmanager.split(payload)
    if source == "webhook":
        name = webhook or "webhook"
        return [webhooks.normalise(name, sources.webhooks.get(name), payload, {})]
    if source == "file":
        return [Incoming("file", "file.changed", payload)]
    raise NightshiftError(f"unknown source {source!r} (one of {', '.join(KINDS)})")
