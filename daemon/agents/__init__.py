"""Agent backends: one interface (`AgentBackend` → `AgentRun`), several implementations."""

from pathlib import Path

from .base import AgentBackend, AgentRun, RunContext
from .builtin import BuiltinBackend
from .claude import ClaudeBackend
from .codex import CodexBackend
from .script import ScriptBackend

__all__ = [
    "AgentBackend",
    "AgentRun",
    "BuiltinBackend",
    "ClaudeBackend",
    "CodexBackend",
    "RunContext",
    "ScriptBackend",
    "default_backends",
]


def default_backends(state_dir: Path) -> dict[str, AgentBackend]:
    """The backends available to automations, by name; CLI state lives under `state_dir`."""
    agents = state_dir / "agents"
    backends: dict[str, AgentBackend] = {
        "builtin": BuiltinBackend(),
        "codex": CodexBackend(agents / "codex" / "home"),
        "claude": ClaudeBackend(agents / "claude"),
    }
    backends["script"] = ScriptBackend(delegates=dict(backends))
    return backends
