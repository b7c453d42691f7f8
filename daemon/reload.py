"""Hot reload: watch the automations and skills folders and refresh the loader."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from watchfiles import awatch

from .loader import Catalog, Loader

log = structlog.get_logger(__name__)


async def watch(
    loader: Loader,
    on_change: Callable[[Catalog, set[Path]], Awaitable[None]],
    *,
    debounce_ms: int = 50,
    force_polling: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Refresh `loader` on every batch of file changes and hand the catalog to `on_change`.

    A batch is treated as "these paths changed": each is re-read and re-validated, and only
    what validates is swapped in (watchfiles collapses an editor's write-and-rename into one).
    """
    roots = [p for p in (loader.automations_dir, loader.skills_dir) if p.is_dir()]
    if not roots:
        log.warning("nothing to watch: automations and skills folders are missing")
        return
    async for changes in awatch(
        *roots,
        debounce=debounce_ms,
        step=max(min(debounce_ms // 2, 50), 5),
        stop_event=stop,
        force_polling=force_polling,
        poll_delay_ms=100,
    ):
        paths = {Path(p) for _, p in changes}
        try:
            catalog = await asyncio.to_thread(loader.refresh, paths)
            await on_change(catalog, paths)
        except Exception:
            # One bad batch must not end hot reload (and with it the daemon): the catalog
            # keeps what it had, and the next change is read again.
            log.exception("reload failed; keeping the current automations", changed=len(paths))
