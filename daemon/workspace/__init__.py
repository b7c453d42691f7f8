"""Where runs work: a git worktree per run."""

from .mirror import is_url, mirror
from .worktree import (
    Outcome,
    WorkspaceError,
    Worktree,
    branch_name,
    create,
    discard_spares,
    finish,
    live_diff,
    prepare_spare,
    remove,
    salvage,
    salvage_all,
)

__all__ = [
    "Outcome",
    "WorkspaceError",
    "Worktree",
    "branch_name",
    "create",
    "discard_spares",
    "finish",
    "is_url",
    "live_diff",
    "mirror",
    "prepare_spare",
    "remove",
    "salvage",
    "salvage_all",
]
