"""Serving ASGI apps (the control API and the HTTP server) with uvicorn inside the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    app: Any,
    started: asyncio.Event,
    *,
    uds: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    bound: list[int] | None = None,
) -> None:
    """Serve `app` until cancelled; set `started` once listening.

    On a Unix socket (`uds`) the socket is created owner-only (umask 077, then mode 0600).
    With TCP, the port actually bound is appended to `bound` (useful with port 0).
    """
    config = uvicorn.Config(
        app,
        uds=str(uds) if uds else None,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _QuietServer(config)
    old = os.umask(0o077) if uds else None
    try:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.005)
    finally:
        if old is not None:
            os.umask(old)
    if uds:
        os.chmod(uds, 0o600)
    elif bound is not None:
        bound.append(server.servers[0].sockets[0].getsockname()[1])
    started.set()
    try:
        await asyncio.shield(task)
    finally:
        # Cancelling this coroutine does not stop uvicorn's own task: ask it to exit (it closes
        # the listening socket at once) and wait, bounded by its graceful-shutdown timeout.
        server.should_exit = True
        await asyncio.wait({task}, timeout=5)
