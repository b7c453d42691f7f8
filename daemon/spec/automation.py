"""The automation file (`automations/*.yaml`): the contract, as pydantic models."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger as _APDate
from apscheduler.triggers.interval import IntervalTrigger as _APInterval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..durations import Duration
from ..secrets import SecretRef
from . import templates
from .cron import check_crontab, parse_crontab

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Interval slots are counted from a fixed anchor so every replica and every restart agrees.
_INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


DEFAULT_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")


class GitHubTrigger(_Strict):
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


class AlertmanagerTrigger(_Strict):
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


class WebhookTrigger(_Strict):
    """A generic JSON webhook on `/hooks/<source>` (sources are configured in config.yaml)."""

    type: Literal["webhook"]
    id: str | None = None
    source: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")


class FileTrigger(_Strict):
    """Files changed under the daemon's folder: paths or globs, debounced."""

    type: Literal["file"]
    id: str | None = None
    paths: list[str] = Field(min_length=1, description="globs relative to the daemon's folder")
    debounce: Duration = timedelta(milliseconds=500)
    changes: list[Literal["added", "modified", "deleted"]] = Field(
        default=["added", "modified", "deleted"]
    )


ScheduleTrigger = CronTrigger | IntervalTrigger | DateTrigger
EventTrigger = GitHubTrigger | AlertmanagerTrigger | WebhookTrigger | FileTrigger
# Chat triggers join this discriminated union with the Slack source.
Trigger = Annotated[
    CronTrigger
    | IntervalTrigger
    | DateTrigger
    | ManualTrigger
    | GitHubTrigger
    | AlertmanagerTrigger
    | WebhookTrigger
    | FileTrigger,
    Field(discriminator="type"),
]


def describe_trigger(trigger: Any) -> str:
    """A short human description (`cron 0 2 * * * UTC`, `every 15m`, `github issues`)."""
    if isinstance(trigger, GitHubTrigger):
        return "github " + ",".join(trigger.events)
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


def _agent_shorthand(value: Any) -> Any:
    return {"backend": value} if isinstance(value, str) else value


class BuiltinAgent(_Strict):
    """nightshift's own agent loop over any OpenAI-compatible Chat Completions API."""

    backend: Literal["builtin"]
    base_url: str = Field("https://api.openai.com/v1", description="…/v1 of the API")
    model: str = "gpt-4.1"
    api_key: SecretRef | None = Field(
        None, description="e.g. ${OPENAI_API_KEY}; none for local servers"
    )
    max_steps: int = Field(50, ge=1, le=1000, description="model calls per run")
    max_tokens: int | None = Field(None, ge=1, description="total tokens per run")
    max_cost_usd: float | None = Field(
        None, gt=0, description="cost budget per run, from the prices below and the usage"
    )
    price_per_mtok: tuple[float, float] | None = Field(
        None, description="[input, output] USD per million tokens, e.g. [2.0, 8.0]"
    )
    command_timeout: Duration = timedelta(minutes=5)
    retry_backoff: Duration = Field(
        timedelta(milliseconds=500), description="first wait after a 429/5xx; doubles each retry"
    )
    allow_commands: list[str] = Field(
        default=["*"], description="shell globs of commands the agent may run on its own"
    )
    approval_commands: list[str] = Field(
        default=[
            "git push*",
            "gh *",
            "curl *",
            "wget *",
            "pip install*",
            "npm install*",
            "npm publish*",
            "docker *",
            "ssh *",
            "scp *",
        ],
        description="commands that wait for an approval first (elevated actions)",
    )
    deny_commands: list[str] = Field(
        default=["sudo *", "rm -rf /*", "rm -rf ~*"], description="commands always refused"
    )
    allow_unsandboxed: bool = Field(
        False, description="run commands even where no sandbox (bubblewrap) can be had"
    )

    @model_validator(mode="after")
    def _cost_needs_prices(self) -> BuiltinAgent:
        if self.max_cost_usd is not None and self.price_per_mtok is None:
            raise ValueError("max_cost_usd needs price_per_mtok: [input, output] USD per 1M tokens")
        return self

    def cost_of(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call's usage (0 without prices)."""
        if self.price_per_mtok is None:
            return 0.0
        price_in, price_out = self.price_per_mtok
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000


class CodexAgent(_Strict):
    """The Codex CLI (`codex exec --json`), pointed at a Responses API provider."""

    backend: Literal["codex"]
    base_url: str = Field("https://api.openai.com/v1", description="…/v1 of a Responses API")
    model: str = "gpt-5.5"
    api_key: SecretRef | None = Field(None, description="e.g. ${OPENAI_API_KEY}")
    sandbox: Literal["read-only", "workspace-write"] = Field(
        "workspace-write", description="Codex's own sandbox: no network, writes in the worktree"
    )
    max_tokens: int | None = Field(None, ge=1, description="total tokens per run")
    deny_commands: list[str] = Field(
        default=["sudo", "git push --force", "rm -rf /"],
        description="command prefixes Codex refuses (its execpolicy rules: `git push` refuses "
        "`git push origin main`, also inside `a && b`); the agent hears why and carries on",
    )
    max_retries: int = Field(4, ge=0, le=20, description="model API retries inside Codex")
    unreachable_after: Duration = Field(
        timedelta(seconds=60),
        description="end the run when the model server stays unreachable this long "
        "(the CLI itself would wait forever)",
    )
    binary: str | None = Field(None, description="codex executable; default: the pinned install")

    @field_validator("deny_commands")
    @classmethod
    def _prefixes_split(cls, value: list[str]) -> list[str]:
        for prefix in value:
            try:
                tokens = shlex.split(prefix)
            except ValueError as exc:
                raise ValueError(f"{prefix!r}: {exc}") from None
            if not tokens:
                raise ValueError("an empty command prefix would refuse every command")
        return value


class ClaudeAgent(_Strict):
    """Claude Code (`claude -p` with stream-json in and out), pointed at a Messages API."""

    backend: Literal["claude"]
    base_url: str | None = Field(None, description="ANTHROPIC_BASE_URL; default Anthropic's")
    model: str | None = None
    api_key: SecretRef | None = Field(None, description="e.g. ${ANTHROPIC_API_KEY}")
    allow: list[str] = Field(
        default=["Read", "Edit", "Write", "Glob", "Grep", "LS", "Bash"],
        description="permission rules the agent may use on its own",
    )
    ask: list[str] = Field(
        default=[
            "Bash(git push:*)",
            "Bash(gh:*)",
            "Bash(curl:*)",
            "Bash(wget:*)",
            "Bash(pip install:*)",
            "Bash(npm install:*)",
            "Bash(docker:*)",
            "Bash(ssh:*)",
            "WebFetch",
            "WebSearch",
        ],
        description="permission rules that wait for an approval in the thread",
    )
    deny: list[str] = Field(
        default=["Bash(sudo:*)", "Bash(rm -rf /:*)"], description="always refused"
    )
    max_cost_usd: float | None = Field(None, gt=0, description="cost budget per run")
    allow_unsandboxed: bool = Field(
        False, description="run commands even where no sandbox (bubblewrap) can be had"
    )
    max_retries: int = Field(2, ge=0, le=10, description="API retries inside Claude Code")
    binary: str | None = Field(None, description="claude executable; default: the pinned install")


DelegateAgent = Annotated[BuiltinAgent | CodexAgent | ClaudeAgent, Field(discriminator="backend")]


class ScriptAgent(_Strict):
    """Runs the skill's script: run context as JSON on stdin, RunEvents as JSON lines out.

    With `delegate`, the script hands its judgement calls (pick labels, write the fix) to that
    agent backend in the same workspace; without it, the script decides on its own.
    """

    backend: Literal["script"] = "script"
    entrypoint: str | None = Field(
        None, description="script path relative to the skill folder; default from the skill"
    )
    delegate: Annotated[DelegateAgent | None, BeforeValidator(_agent_shorthand)] = Field(
        None, description="the agent the script asks for judgement (builtin, codex, claude)"
    )


AgentSpec = Annotated[
    ScriptAgent | BuiltinAgent | CodexAgent | ClaudeAgent,
    BeforeValidator(_agent_shorthand),
    Field(discriminator="backend"),
]


class Workspace(_Strict):
    """Where the run works: a repository (local path or clone URL) and its base branch."""

    repository: str = Field(".", description="local path (relative to the daemon) or URL")
    base_branch: str | None = None
    isolate: bool | None = Field(
        None,
        description="work in a git worktree on branch nightshift/<automation>/<run> "
        "(default: yes for agent backends and scripts with a delegate, no for plain scripts)",
    )
    keep: bool = Field(False, description="keep the worktree folder after the run, for review")


class Report(_Strict):
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


class ConcurrencyPolicy(_Strict):
    max_instances: int = Field(1, ge=1, description="runs of this automation at once; more queue")


class RetryPolicy(_Strict):
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


class MisfirePolicy(_Strict):
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


class ThrottlePolicy(_Strict):
    """At most `max_runs` runs per `per`, counted per dedup key (per automation without one)."""

    max_runs: int = Field(ge=1)
    per: Duration


class Policies(_Strict):
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


class Automation(_Strict):
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
