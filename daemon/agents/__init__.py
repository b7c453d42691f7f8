"""Agent backends: one interface (`AgentBackend` → `AgentRun`), several implementations."""

from .base import AgentBackend, AgentRun, RunContext
from .builtin import BuiltinBackend
from .script import ScriptBackend

__all__ = [
    "AgentBackend",
    "AgentRun",
    "BuiltinBackend",
    "RunContext",
    "ScriptBackend",
    "default_backends",
]


def default_backends() -> dict[str, AgentBackend]:
    """The backends available to automations, by name."""
    return {"script": ScriptBackend(), "builtin": BuiltinBackend()}
