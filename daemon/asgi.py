"""Serving ASGI apps (the control API and the HTTP server) with uvicorn inside the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_in_background(app: Any, port: int) -> asyncio.Task[None]:
    """Serve `app` on 127.0.0.1:`port` in a task; return once it listens."""
    ready = asyncio.Event()
    task = asyncio.create_task(serve(app, ready, port=port))
    done, _ = await asyncio.wait(
        {task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        await task  # it failed to start: raise why
    return task


async def stop(task: asyncio.Task[None] | None) -> None:
    """Stop a server started by `serve_in_background` (its port closes before this returns)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
