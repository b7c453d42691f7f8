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
from uvicorn.protocols.http.h11_impl import H11Protocol


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


class _DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers.

    uvicorn waits for headers as long as a client cares to send them, so a client that sends
    half a request holds its connection for ever; a few hundred of them exhaust the server.
    Here a connection whose next request has not started `header_timeout` seconds after the
    connection opened (or the last response ended) is closed. The body has its own deadline
    in the app (`web.read_body`).
    """

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout, self._expire, self.scope)

    def _expire(self, armed_scope: object) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if self.scope is armed_scope and idle and not self.transport.is_closing():
            self.transport.close()  # no request began in time: headers never completed


def _protocol(header_timeout: float) -> type[asyncio.Protocol]:
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"header_timeout": header_timeout})


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
    header_timeout: float = 10.0,
    max_connections: int | None = None,
) -> None:
    """Serve `app` until cancelled; set `started` once listening.

    On a Unix socket (`uds`) the socket is created owner-only (umask 077, then mode 0600).
    With TCP, the port actually bound is appended to `bound` (useful with port 0).
    A connection whose request headers take longer than `header_timeout` seconds is closed;
    beyond `max_connections` open connections, requests get 503.
    """
    config = uvicorn.Config(
        app,
        http=_protocol(header_timeout),
        limit_concurrency=max_connections,
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
