"""The automation file (`automations/*.yaml`): the contract, as pydantic models (its
triggers in `triggers`, its agent in `agents`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
)

from ..durations import Duration
from ..secrets import SecretRef
from . import templates
from .agents import AgentSpec, ScriptAgent
from .strict import Strict
from .triggers import (
    CronTrigger,
    DateTrigger,
    EventTrigger,
    IntervalTrigger,
    ScheduleTrigger,
    Trigger,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class Workspace(Strict):
    """Where the run works: a repository (local path or clone URL) and its base branch."""

    repository: str = Field(".", description="local path (relative to the daemon) or URL")
    base_branch: str | None = None
    isolate: bool | None = Field(
        None,
        description="work in a git worktree on branch nightshift/<automation>/<run> "
        "(default: yes for agent backends and scripts with a delegate, no for plain scripts)",
    )
    keep: bool = Field(False, description="keep the worktree folder after the run, for review")


class Report(Strict):
    """Where the run reports."""

    channel: str | None = Field(None, description="Slack channel for the run's thread")
    console: bool = True
    approvers: list[str] = Field(
        default_factory=list,
        description="Slack user IDs (U…) or user groups (S…) who may approve or deny in the thread",
    )
    steerers: list[str] = Field(
        default_factory=list,
        description="Slack user IDs or user groups who may steer or stop (approvers may too)",
    )


class ConcurrencyPolicy(Strict):
    max_instances: int = Field(1, ge=1, description="runs of this automation at once; more queue")


class RetryPolicy(Strict):
    """A failed or timed-out run is retried up to `max` times, waiting `backoff * factor**n`.
    A run cut short by a daemon stop or crash is run again at once, up to `interrupted`
    times: a budget of its own, so a restart never eats the retries kept for failures, and a
    run that keeps taking its daemon down is not run for ever."""

    max: int = Field(0, ge=0, le=100)
    interrupted: int = Field(
        3, ge=0, le=100, description="times an interrupted run is run again (apart from max)"
    )
    backoff: Duration = timedelta(seconds=30)
    factor: float = Field(2.0, ge=1.0)
    max_backoff: Duration = timedelta(minutes=30)

    def delay(self, attempt: int) -> timedelta:
        """Wait before attempt number `attempt` (2 = first retry)."""
        secs = self.backoff.total_seconds() * self.factor ** max(attempt - 2, 0)
        return timedelta(seconds=min(secs, self.max_backoff.total_seconds()))


def _misfire_shorthand(value: Any) -> Any:
    return {"policy": value} if isinstance(value, str) else value


class MisfirePolicy(Strict):
    """What to do with fires missed while the daemon was down.

    `skip` records every missed fire as skipped; `run_once` runs the latest one within `grace`
    and records the others; `run_all` runs every one within `grace`. Older ones are skipped.
    """

    policy: Literal["skip", "run_once", "run_all"] = "run_once"
    grace: Duration = timedelta(hours=1)


def _throttle_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        count, sep, window = value.partition(" per ")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"throttle {value!r}: expected e.g. '3 per 1h'")
        return {"max_runs": int(count), "per": window.strip()}
    return value


class ThrottlePolicy(Strict):
    """At most `max_runs` runs per `per`, counted per dedup key (per automation without one)."""

    max_runs: int = Field(ge=1)
    per: Duration


def _cost_cap_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        amount, sep, window = value.partition(" per ")
        try:
            usd = float(amount.strip().removeprefix("$"))
        except ValueError:
            usd = -1.0
        if not sep or usd <= 0:
            raise ValueError(f"cost_cap {value!r}: expected e.g. '$5 per 1d'")
        return {"max_usd": usd, "per": window.strip()}
    return value


class CostCapPolicy(Strict):
    """At most `max_usd` of model use per `per`, counted per dedup key (per automation without
    one; a GitHub conversation is its key): no run starts past it, and a run that crosses it
    is stopped."""

    max_usd: float = Field(gt=0)
    per: Duration = timedelta(days=1)


class Policies(Strict):
    concurrency: ConcurrencyPolicy = ConcurrencyPolicy()
    timeout: Duration = Field(timedelta(minutes=30), description="wall time of one run")
    retries: RetryPolicy = RetryPolicy()
    misfire: Annotated[MisfirePolicy, BeforeValidator(_misfire_shorthand)] = MisfirePolicy()
    approval_ttl: Duration = Field(
        timedelta(hours=24), description="an undecided approval request expires: taken as a deny"
    )
    on_interrupt: Literal["retry", "fail"] = Field(
        "retry", description="a run cut short by a daemon crash or stop: run it again, or fail it"
    )
    dedup_key: str | None = Field(
        None, description="template: events with the same key are the same thing"
    )
    dedup_window: Duration = Field(
        timedelta(0), description="a key matched again within this window starts nothing"
    )
    throttle: Annotated[ThrottlePolicy | None, BeforeValidator(_throttle_shorthand)] = None
    cost_cap: Annotated[CostCapPolicy | None, BeforeValidator(_cost_cap_shorthand)] = None
    on_active: Literal["queue", "leave", "supersede"] = Field(
        "queue", description="a run for the same key is still active: queue, leave it, or cancel it"
    )

    @field_validator("dedup_key")
    @classmethod
    def _compile_key(cls, value: str | None) -> str | None:
        if value is not None and templates.is_template(value):
            err = templates.check_syntax(value)
            if err:
                raise ValueError(err)
        return value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _templates_compile(value: Any) -> Any:
    """Every template inside an input's value compiles (checked per input, so an error names
    the input and its line)."""
    if isinstance(value, str) and templates.is_template(value):
        templates.checked(value)
    elif isinstance(value, dict):
        for item in value.values():
            _templates_compile(item)
    elif isinstance(value, list):
        for item in value:
            _templates_compile(item)
    return value


_Condition = Annotated[str, AfterValidator(lambda v: templates.checked(v, condition=True))]
_InputValue = Annotated[Any, AfterValidator(_templates_compile)]


class Automation(Strict):
    """One automation: when it fires, which skill it runs with which inputs, and how."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    triggers: list[Trigger] = Field(default_factory=list)
    when: Annotated[list[_Condition], BeforeValidator(_listify)] = Field(
        default_factory=list, description="Jinja expressions over `event`; all must be true"
    )
    skill: str
    inputs: dict[str, _InputValue] = Field(default_factory=dict)
    agent: AgentSpec = ScriptAgent()
    workspace: Workspace = Workspace()
    report: Report = Report()
    policies: Policies = Policies()
    env: dict[str, SecretRef] = Field(
        default_factory=dict, description="environment for the run; values may be ${ENV} refs"
    )

    def event_triggers(self, kind: str) -> list[tuple[str, EventTrigger]]:
        """(trigger key, trigger) for each trigger of one event kind (github, file, …)."""
        return [
            (trig.id or f"{trig.type}-{index}", trig)  # type: ignore[misc]
            for index, trig in enumerate(self.triggers)
            if trig.type == kind
        ]

    def isolated(self) -> bool:
        """Whether runs work in their own worktree."""
        if self.workspace.isolate is not None:
            return self.workspace.isolate
        return self.agent.backend != "script" or self.agent.delegate is not None

    def schedule_triggers(self) -> list[tuple[str, ScheduleTrigger]]:
        """(trigger key, trigger) for each time-based trigger; keys are stable per position."""
        out: list[tuple[str, ScheduleTrigger]] = []
        for index, trig in enumerate(self.triggers):
            if isinstance(trig, CronTrigger | IntervalTrigger | DateTrigger):
                out.append((trig.id or f"{trig.type}-{index}", trig))
        return out
