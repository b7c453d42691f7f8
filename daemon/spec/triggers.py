"""The triggers of an automation: schedules (cron, interval, date), by hand, and events
(GitHub, Alertmanager, generic webhooks, file changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger as _APDate
from apscheduler.triggers.interval import IntervalTrigger as _APInterval
from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
)

from ..durations import Duration
from .cron import check_crontab, parse_crontab
from .strict import Strict

# Interval slots are counted from a fixed anchor so every replica and every restart agrees.
_INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


def _check_timezone(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # pydantic says what type it wants
    shown = value if len(value) <= 60 else value[:60] + "…"
    # ZoneInfo opens a file named after the value: a long one fails in the OS (ENAMETOOLONG).
    try:
        if len(value) > 255:
            raise ValueError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {shown!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


class _ScheduleTrigger(Strict):
    id: str | None = Field(None, description="stable id of this trigger within the automation")

    def build(self) -> BaseTrigger:
        """The APScheduler trigger used as a fire-time calculator."""
        raise NotImplementedError


class CronTrigger(_ScheduleTrigger):
    """Fires on a crontab schedule (5 fields or @daily etc.) in a time zone."""

    type: Literal["cron"]
    expr: str = Field(description="crontab expression, e.g. '0 2 * * *' or '@daily'")
    timezone: Annotated[str, BeforeValidator(_check_timezone)] = "UTC"

    @field_validator("expr")
    @classmethod
    def _valid_expr(cls, value: str) -> str:
        check_crontab(value)
        return value

    def build(self) -> BaseTrigger:
        return parse_crontab(self.expr, self.timezone)


class IntervalTrigger(_ScheduleTrigger):
    """Fires every `every`, on slots anchored at `start` (default 2000-01-01 UTC)."""

    type: Literal["interval"]
    every: Duration
    start: datetime | None = None

    @field_validator("every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1:
            raise ValueError("interval must be at least 1s")
        return value

    def build(self) -> BaseTrigger:
        start = self.start or _INTERVAL_ANCHOR
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        return _APInterval(seconds=self.every.total_seconds(), start_date=start, timezone=UTC)


class DateTrigger(_ScheduleTrigger):
    """Fires once at `at` (ISO 8601; naive times are read in `timezone`)."""

    type: Literal["date"]
    at: datetime
    timezone: Annotated[str, BeforeValidator(_check_timezone)] = "UTC"

    def build(self) -> BaseTrigger:
        at = self.at if self.at.tzinfo else self.at.replace(tzinfo=ZoneInfo(self.timezone))
        return _APDate(run_date=at)


class ManualTrigger(Strict):
    """Documents that the automation is meant to be started by hand (`nightshift trigger`).

    Every enabled automation can be triggered by hand; this trigger only declares it.
    """

    type: Literal["manual"]
    id: str | None = None


DEFAULT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


class GitHubTrigger(Strict):
    """A GitHub webhook delivery (`/hooks/github`). Every listed field must match.

    By default only deliveries caused by the repository's owner, members and collaborators
    start runs, so a stranger's issue cannot start an agent; events caused by nightshift itself
    (its bot user, its `nightshift/` branches) never do unless `allow_self` is set.
    """

    type: Literal["github"]
    id: str | None = None
    events: list[str] = Field(min_length=1, description="X-GitHub-Event values, e.g. issues")
    actions: list[str] = Field(default_factory=list, description="payload action, e.g. opened")
    repositories: list[str] = Field(default_factory=list, description="owner/name, globs allowed")
    labels: list[str] = Field(default_factory=list, description="any of these labels present")
    branches: list[str] = Field(default_factory=list, description="globs on the event's branch")
    conclusions: list[str] = Field(
        default_factory=list, description="workflow_run/check_suite/check_run conclusion"
    )
    author_associations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ASSOCIATIONS),
        description="sender's association; [] or ['*'] admits anyone",
    )
    allow_self: bool = Field(False, description="also fire on events nightshift itself caused")


class GitHubMentionTrigger(Strict):
    """A person addressing nightshift in an issue or pull request: `@nightshift <request>` in a
    new comment, review comment, submitted review, or the body of an opened issue or PR.

    The handle counts as a word outside code and quotes; edits and deletions start nothing.
    Only people with write, maintain or admin permission on the repository (asked of GitHub)
    are heard; bots never, unless listed; nightshift itself never. The issue or PR is one
    conversation: a mention while its run is active steers it, `approve` / `deny <reason>`
    decide its pending approval, and after it ended a mention starts the next run.
    """

    type: Literal["github_mention"]
    id: str | None = None
    handle: str = Field(
        "@nightshift",
        pattern=r"^@[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$",
        description="the name people write to address nightshift",
    )
    repositories: list[str] = Field(default_factory=list, description="owner/name, globs allowed")
    allow_bots: list[str] = Field(
        default_factory=list, description="bot logins that may ask (none by default)"
    )


class AlertmanagerTrigger(Strict):
    """An alert from Prometheus Alertmanager (`/hooks/alertmanager`), one event per alert."""

    type: Literal["alertmanager"]
    id: str | None = None
    matchers: list[str] = Field(
        default_factory=list,
        description='Alertmanager label matchers: name="v", name!="v", name=~"re", name!~"re"',
    )
    severity: list[str] = Field(default_factory=list, description="shortcut for a severity matcher")
    status: list[Literal["firing", "resolved"]] = Field(
        default=["firing"],
        description="which notifications start runs; a resolve always reaches its firing run",
    )

    @field_validator("matchers")
    @classmethod
    def _parse_matchers(cls, value: list[str]) -> list[str]:
        from .matchers import parse_matcher

        for text in value:
            parse_matcher(text)
        return value


class WebhookTrigger(Strict):
    """A generic JSON webhook on `/hooks/<source>` (sources are configured in config.yaml)."""

    type: Literal["webhook"]
    id: str | None = None
    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")


class FileTrigger(Strict):
    """Files changed under the daemon's folder: paths or globs, debounced."""

    type: Literal["file"]
    id: str | None = None
    paths: list[str] = Field(min_length=1, description="globs relative to the daemon's folder")
    debounce: Duration = timedelta(milliseconds=500)
    changes: list[Literal["added", "modified", "deleted"]] = Field(
        default=["added", "modified", "deleted"]
    )


ScheduleTrigger = CronTrigger | IntervalTrigger | DateTrigger
EventTrigger = (
    GitHubTrigger | GitHubMentionTrigger | AlertmanagerTrigger | WebhookTrigger | FileTrigger
)
# Chat triggers join this discriminated union with the Slack source.
Trigger = Annotated[
    CronTrigger
    | IntervalTrigger
    | DateTrigger
    | ManualTrigger
    | GitHubTrigger
    | GitHubMentionTrigger
    | AlertmanagerTrigger
    | WebhookTrigger
    | FileTrigger,
    Field(discriminator="type"),
]


def describe_trigger(trigger: Any) -> str:
    """A short human description (`cron 0 2 * * * UTC`, `every 15m`, `github issues`)."""
    if isinstance(trigger, GitHubTrigger):
        return "github " + ",".join(trigger.events)
    if isinstance(trigger, GitHubMentionTrigger):
        return f"github mention {trigger.handle}"
    if isinstance(trigger, WebhookTrigger):
        return f"webhook {trigger.source}"
    if isinstance(trigger, FileTrigger):
        return "file " + ",".join(trigger.paths)
    if isinstance(trigger, AlertmanagerTrigger):
        return "alertmanager"
    if isinstance(trigger, CronTrigger):
        return f"cron {trigger.expr} {trigger.timezone}"
    if isinstance(trigger, IntervalTrigger):
        from ..durations import format_duration

        return f"every {format_duration(trigger.every)}"
    if isinstance(trigger, DateTrigger):
        return f"at {trigger.at.isoformat()}"
    return "manual"
