"""Where runs work: a git worktree per run."""

from .mirror import is_url, mirror
from .worktree import (
    Outcome,
    WorkspaceError,
    Worktree,
    branch_name,
    create,
    finish,
    prune,
    remove,
    salvage_all,
)

__all__ = [
    "Outcome",
    "WorkspaceError",
    "Worktree",
    "branch_name",
    "create",
    "finish",
    "is_url",
    "mirror",
    "prune",
    "remove",
    "salvage_all",
]
