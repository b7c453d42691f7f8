"""One tree of errors: every failure nightshift reports is a `NightshiftError`.

Each error carries the file, automation or run it concerns, so the user sees one clear line
(`str(err)`) while the log keeps the detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class NightshiftError(Exception):
    """Base class of every error nightshift raises on purpose."""


class ConfigError(NightshiftError):
    """The daemon's config file (or a secret it references) is unusable."""


class SecretError(ConfigError):
    """A `${ENV}` or `${file:path}` secret reference cannot be resolved."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, pinned to a place in a file."""

    path: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        try:
            shown = self.path.relative_to(Path.cwd())
        except ValueError:
            shown = self.path
        where = f"{shown}:{self.line}" if self.line else str(shown)
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ValidationError(NightshiftError):
    """One or more automation or skill files are invalid; `problems` lists all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreError(NightshiftError):
    """The database refused or lost an operation."""


class EngineUnavailable(NightshiftError):
    """The engine that routes a run's messages (Temporal) cannot be reached now."""


class RunNotFound(NightshiftError):
    """No run has the given id."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id} not found")


class AutomationNotFound(NightshiftError):
    """No active automation has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"automation {name!r} not found")


class RunStateError(NightshiftError):
    """The run is not in a state that allows the operation (e.g. steering a finished run)."""


class TemplateError(NightshiftError):
    """A template in an automation (inputs or `when`) failed to render."""


class BackendError(NightshiftError):
    """An agent backend could not start or drive a run."""


class ControlError(NightshiftError):
    """The CLI could not reach the daemon's control API, or the daemon refused a request."""


class DaemonAlreadyRunning(NightshiftError):
    """Another daemon holds the state directory's lock."""
