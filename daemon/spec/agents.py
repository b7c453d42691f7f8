"""The agent an automation runs its skill through: a script, the built-in loop over an
OpenAI-compatible API, the Codex CLI or Claude Code."""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from ..durations import Duration
from ..secrets import SecretRef
from .strict import Strict


def _agent_shorthand(value: Any) -> Any:
    return {"backend": value} if isinstance(value, str) else value


class BuiltinAgent(Strict):
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


class CodexAgent(Strict):
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


class ClaudeAgent(Strict):
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


class ScriptAgent(Strict):
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
