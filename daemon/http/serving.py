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


_TIMEOUT_BODY = b'{"error": "request not received in time"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class _DeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with deadlines for a request's headers and body.

    uvicorn waits for a request as long as a client cares to send it, so a client that sends
    half a request holds its connection for ever, and a few hundred of them exhaust the server.
    One timer per connection looks every `header_timeout` seconds: a connection on which no
    request began or ended since the last look is closed (headers that never complete), and a
    request whose body is still arriving `body_timeout` after it was first seen gets 408 and
    the connection is closed. Nothing is done per request, so the intake's hot path pays
    nothing; the price is that a deadline is kept to within one more interval.
    """

    header_timeout = 10.0
    body_timeout = 30.0
    _timer: asyncio.TimerHandle | None = None
    _ended = 0  # requests answered on this connection
    _ended_at_look = 0  # a fresh connection must begin a request before the first look
    _receiving: tuple[object, float] | None = None  # (the cycle, when first seen) of a body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._timer = self.loop.call_later(self.header_timeout, self._look)

    def on_response_complete(self) -> None:
        self._ended += 1
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def _look(self) -> None:
        if self.transport.is_closing():
            return
        cycle = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if not busy and self._ended == self._ended_at_look:
            self.transport.close()  # no request began in time: its headers never completed
            return
        self._ended_at_look = self._ended
        if busy and cycle is not None and cycle.more_body and not cycle.response_started:
            now = self.loop.time()
            if self._receiving is None or self._receiving[0] is not cycle:
                self._receiving = (cycle, now)
            elif now - self._receiving[1] >= self.body_timeout:
                self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()
                return
        self._timer = self.loop.call_later(self.header_timeout, self._look)


def _protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    return type(
        "DeadlineProtocol",
        (_DeadlineProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )


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
    body_timeout: float = 30.0,
    max_connections: int | None = None,
) -> None:
    """Serve `app` until cancelled; set `started` once listening.

    On a Unix socket (`uds`) the socket is created owner-only (umask 077, then mode 0600).
    With TCP, the port actually bound is appended to `bound` (useful with port 0).
    A connection whose request headers take longer than `header_timeout` seconds is closed, a
    body still arriving after `body_timeout` gets 408; beyond `max_connections` open
    connections, requests get 503.
    """
    config = uvicorn.Config(
        app,
        http=_protocol(header_timeout, body_timeout),
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
