"""File triggers: changes under the daemon's folder, matched by globs, debounced.

One watcher serves every file trigger. Its debounce is the shortest one any trigger asks for;
each batch of changes becomes one event, and each automation sees whether any change in the
batch matches its globs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from pathlib import Path, PurePath

import structlog
from watchfiles import Change, awatch

from ..loader import Catalog
from ..spec import FileTrigger
from .incoming import Incoming

log = structlog.get_logger(__name__)

_KINDS = {Change.added: "added", Change.modified: "modified", Change.deleted: "deleted"}
_SKIP_PARTS = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


def match(trigger: FileTrigger, incoming: Incoming) -> str | None:
    """None when a change in the batch matches one of the trigger's globs and kinds."""
    for change in incoming.payload["changes"]:
        if change["change"] in trigger.changes and any(
            fnmatchcase(change["path"], pattern) for pattern in trigger.paths
        ):
            return None
    return f"no {'/'.join(trigger.changes)} change matches {trigger.paths}"


def file_triggers(catalog: Catalog) -> list[FileTrigger]:
    """Every file trigger of the enabled automations."""
    return [
        trigger
        for automation in catalog.automations.values()
        if automation.enabled
        for _, trigger in automation.event_triggers("file")
        if isinstance(trigger, FileTrigger)
    ]


class FileSource:
    """Watches the daemon's folder while any automation has a file trigger."""

    def __init__(
        self,
        root: Path,
        route: Callable[[Incoming], Awaitable[object]],
        *,
        ignore: list[Path],
        force_polling: bool = False,
    ) -> None:
        self._root = root.resolve()
        self._route = route
        self._ignore = [p.resolve() for p in ignore]
        self._force_polling = force_polling
        self._task: asyncio.Task[None] | None = None
        self._debounce_ms: int | None = None

    @property
    def watching(self) -> bool:
        """True while a watcher runs (some automation has a file trigger)."""
        return self._task is not None

    def _wanted(self, change: Change, path: str) -> bool:
        p = Path(path)
        if _SKIP_PARTS & set(p.parts):
            return False
        return not any(p.is_relative_to(i) for i in self._ignore)

    async def sync(self, catalog: Catalog) -> None:
        """Start, restart (new debounce) or stop the watcher to match the catalog."""
        triggers = file_triggers(catalog)
        debounce = min((int(t.debounce.total_seconds() * 1000) for t in triggers), default=None)
        if debounce == self._debounce_ms and (self._task is not None) == bool(triggers):
            return
        await self.stop()
        self._debounce_ms = debounce
        if triggers and debounce is not None:
            self._task = asyncio.create_task(self._watch(debounce), name="file-source")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, debounce_ms: int) -> None:
        log.info("watching files", root=str(self._root), debounce_ms=debounce_ms)
        async for batch in awatch(
            self._root,
            watch_filter=self._wanted,
            debounce=debounce_ms,
            step=max(min(debounce_ms // 4, 50), 5),
            force_polling=self._force_polling,
            poll_delay_ms=100,
        ):
            changes = sorted(
                {
                    (str(PurePath(path).relative_to(self._root)), _KINDS[kind])
                    for kind, path in batch
                    if kind in _KINDS
                }
            )
            if not changes:
                continue
            payload = {"changes": [{"path": p, "change": c} for p, c in changes]}
            await self._route(Incoming(source="file", type="file.changed", payload=payload))
