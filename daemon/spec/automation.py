"""The automation file (`automations/*.yaml`): the contract, as pydantic models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger as _APDate
from apscheduler.triggers.interval import IntervalTrigger as _APInterval
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..durations import Duration
from ..secrets import SecretRef
from . import templates
from .cron import check_crontab, parse_crontab

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Interval slots are counted from a fixed anchor so every replica and every restart agrees.
_INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


class _ScheduleTrigger(_Strict):
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


class ManualTrigger(_Strict):
    """Documents that the automation is meant to be started by hand (`nightshift trigger`).

    Every enabled automation can be triggered by hand; this trigger only declares it.
    """

    type: Literal["manual"]
    id: str | None = None


ScheduleTrigger = CronTrigger | IntervalTrigger | DateTrigger
# Webhook, file and chat triggers join this discriminated union as their sources land.
Trigger = Annotated[
    CronTrigger | IntervalTrigger | DateTrigger | ManualTrigger, Field(discriminator="type")
]


def describe_trigger(trigger: CronTrigger | IntervalTrigger | DateTrigger | ManualTrigger) -> str:
    """A short human description (`cron 0 2 * * * UTC`, `every 15m`)."""
    if isinstance(trigger, CronTrigger):
        return f"cron {trigger.expr} {trigger.timezone}"
    if isinstance(trigger, IntervalTrigger):
        from ..durations import format_duration

        return f"every {format_duration(trigger.every)}"
    if isinstance(trigger, DateTrigger):
        return f"at {trigger.at.isoformat()}"
    return "manual"


def _agent_shorthand(value: Any) -> Any:
    return {"backend": value} if isinstance(value, str) else value


class ScriptAgent(_Strict):
    """Runs the skill's script: run context as JSON on stdin, RunEvents as JSON lines out."""

    backend: Literal["script"] = "script"
    entrypoint: str | None = Field(
        None, description="script path relative to the skill folder; default from the skill"
    )


AgentSpec = Annotated[ScriptAgent, BeforeValidator(_agent_shorthand)]


class Workspace(_Strict):
    """Where the run works: a repository (local path or clone URL) and its base branch."""

    repository: str = Field(".", description="local path (relative to the daemon) or URL")
    base_branch: str | None = None


class Report(_Strict):
    """Where the run reports."""

    channel: str | None = Field(None, description="Slack channel for the run's thread")
    console: bool = True


class ConcurrencyPolicy(_Strict):
    max_instances: int = Field(1, ge=1, description="runs of this automation at once; more queue")


class RetryPolicy(_Strict):
    """A failed or timed-out run is retried up to `max` times, waiting `backoff * factor**n`."""

    max: int = Field(0, ge=0, le=100)
    backoff: Duration = timedelta(seconds=30)
    factor: float = Field(2.0, ge=1.0)
    max_backoff: Duration = timedelta(minutes=30)

    def delay(self, attempt: int) -> timedelta:
        """Wait before attempt number `attempt` (2 = first retry)."""
        secs = self.backoff.total_seconds() * self.factor ** max(attempt - 2, 0)
        return timedelta(seconds=min(secs, self.max_backoff.total_seconds()))


def _misfire_shorthand(value: Any) -> Any:
    return {"policy": value} if isinstance(value, str) else value


class MisfirePolicy(_Strict):
    """What to do with fires missed while the daemon was down.

    `skip` records every missed fire as skipped; `run_once` runs the latest one within `grace`
    and records the others; `run_all` runs every one within `grace`. Older ones are skipped.
    """

    policy: Literal["skip", "run_once", "run_all"] = "run_once"
    grace: Duration = timedelta(hours=1)


class Policies(_Strict):
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy()
    timeout: Duration = Field(timedelta(minutes=30), description="wall time of one run")
    retries: RetryPolicy = RetryPolicy()
    misfire: Annotated[MisfirePolicy, BeforeValidator(_misfire_shorthand)] = MisfirePolicy()
    on_interrupt: Literal["retry", "fail"] = Field(
        "retry", description="a run cut short by a daemon crash or stop: run it again, or fail it"
    )


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Automation(_Strict):
    """One automation: when it fires, which skill it runs with which inputs, and how."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    triggers: list[Trigger] = Field(default_factory=list)
    when: Annotated[list[str], BeforeValidator(_listify)] = Field(
        default_factory=list, description="Jinja expressions over `event`; all must be true"
    )
    skill: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    agent: AgentSpec = ScriptAgent()
    workspace: Workspace = Workspace()
    report: Report = Report()
    policies: Policies = Policies()
    env: dict[str, SecretRef] = Field(
        default_factory=dict, description="environment for the run; values may be ${ENV} refs"
    )

    @field_validator("when")
    @classmethod
    def _compile_when(cls, value: list[str]) -> list[str]:
        for expr in value:
            err = templates.check_condition(expr)
            if err:
                raise ValueError(err)
        return value

    @field_validator("inputs")
    @classmethod
    def _compile_inputs(cls, value: dict[str, Any]) -> dict[str, Any]:
        def walk(v: Any) -> None:
            if isinstance(v, str) and templates.is_template(v):
                err = templates.check_syntax(v)
                if err:
                    raise ValueError(err)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(value)
        return value

    def schedule_triggers(self) -> list[tuple[str, ScheduleTrigger]]:
        """(trigger key, trigger) for each time-based trigger; keys are stable per position."""
        out: list[tuple[str, ScheduleTrigger]] = []
        for index, trig in enumerate(self.triggers):
            if isinstance(trig, CronTrigger | IntervalTrigger | DateTrigger):
                out.append((trig.id or f"{trig.type}-{index}", trig))
        return out
