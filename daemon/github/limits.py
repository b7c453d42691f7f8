"""Per-repository write limits for pull requests, counted on GitHub itself (as Renovate does).

The count comes from the repository, not from a local tally, so every automation, replica and
restart agrees: pull requests whose head branch starts with nightshift's prefix, opened in the
last hour (`prs_per_hour`) and still open (`open_prs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .client import GitHubClient, GitHubError


class LimitReached(GitHubError):
    """Opening one more pull request would break a configured limit."""


@dataclass(frozen=True)
class WriteLimits:
    """Renovate's prHourlyLimit and prConcurrentLimit, for nightshift's own branches."""

    prs_per_hour: int = 2
    open_prs: int = 10
    branch_prefix: str = "nightshift/"

    def check_pull_request(self, gh: GitHubClient, repo: str, now: datetime | None = None) -> None:
        """Raise `LimitReached` when the repository has no room for another pull request."""
        now = now or datetime.now(UTC)
        ours = [
            p
            for p in gh.pulls(repo, state="all", limit=max(self.open_prs, 100))
            if p.head.ref.startswith(self.branch_prefix)
        ]
        still_open = [p for p in ours if p.state == "open"]
        if self.open_prs and len(still_open) >= self.open_prs:
            raise LimitReached(
                f"{repo} already has {len(still_open)} open nightshift pull requests "
                f"(limit {self.open_prs})"
            )
        hour_ago = now - timedelta(hours=1)
        recent = [p for p in ours if p.created_at is not None and p.created_at >= hour_ago]
        if self.prs_per_hour and len(recent) >= self.prs_per_hour:
            raise LimitReached(
                f"{repo}: {len(recent)} nightshift pull requests opened in the last hour "
                f"(limit {self.prs_per_hour} per hour)"
            )
