"""Where runs work: a git worktree per run."""

from .worktree import (
    Outcome,
    WorkspaceError,
    Worktree,
    branch_name,
    create,
    finish,
    prune,
    salvage_all,
)

__all__ = [
    "Outcome",
    "WorkspaceError",
    "Worktree",
    "branch_name",
    "create",
    "finish",
    "prune",
    "salvage_all",
]
