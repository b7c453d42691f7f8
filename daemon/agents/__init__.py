"""Agent backends: one interface (`AgentBackend` → `AgentRun`), several implementations."""

from pathlib import Path

from .base import AgentBackend, AgentRun, RunContext
from .builtin import BuiltinBackend
from .claude import ClaudeBackend
from .codex import CodexBackend
from .processes import kill_orphans, watch_children_with_pidfd
from .script import ScriptBackend
from .script_journal import Recorded, discard_journal, recorded

__all__ = [
    "AgentBackend",
    "AgentRun",
    "BuiltinBackend",
    "ClaudeBackend",
    "CodexBackend",
    "Recorded",
    "RunContext",
    "ScriptBackend",
    "default_backends",
    "discard_journal",
    "kill_orphans",
    "recorded",
    "watch_children_with_pidfd",
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
