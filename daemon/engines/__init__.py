"""Engines that execute runs. The local engine is `executor.Executor` (one process, SQLite or
PostgreSQL); `TemporalEngine` executes the same runs as Temporal workflows shared by several
replicas. The face is lazy: the workflow module is loaded by Temporal's sandbox, and the
Temporal client only where the config names that engine."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .temporal import TemporalEngine

__all__ = ["TemporalEngine"]


def __getattr__(name: str) -> Any:
    if name == "TemporalEngine":
        return importlib.import_module(".temporal", __name__).TemporalEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
