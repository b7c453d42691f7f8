"""The writer process: dispatched events are redacted and written off the daemon's process.

Storing an event before its 2xx costs more Python than the HTTP server does to answer it, and
in one process both share one GIL. So the daemon hands each group-commit batch to a child
(`python -m daemon.store.writer_child`) over a pipe and awaits its answer; the request path keeps
its core. The child holds its own connection to the same database (SQLite in WAL mode, or
PostgreSQL) and writes with the same `Store.dispatch_many` the in-process path uses, so the
transaction, its guards and its results are the same either way.

The database URL (it may hold a password) goes over the pipe, never on the command line;
secret values travel the same way so the child redacts what the daemon would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Sequence

import orjson
import structlog

from ..errors import StoreError
from ..secrets import redactor
from .requests import Dispatched, DispatchRequest
from .wire import (
    Frames,
    decode_results,
    encode_batch,
    frame,
)

log = structlog.get_logger(__name__)


class _Child(asyncio.SubprocessProtocol):
    """One writer child's pipes: frames are cut from its stdout as they arrive and answer
    the oldest waiting batch, in the pipe's own callback (no reader task, no stream)."""

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[bytes]] = deque()
        self.exited = asyncio.get_running_loop().create_future()
        self.transport: asyncio.SubprocessTransport | None = None
        self.lost = False
        self._frames = Frames()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for content in self._frames.feed(data):
            if not self.waiting:  # an answer nobody asked for: the pipe is out of step
                self.lose()
                return
            answer = self.waiting.popleft()
            if not answer.done():  # its sender may have been cancelled meanwhile
                answer.set_result(content)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # its answers ended (stdin closes when the daemon ends its input)
            self.lose()

    def process_exited(self) -> None:
        # Not `lose()` here: the exit can be noticed before the last answers are read; the
        # end of its stdout, which follows them, is what fails whatever is still waiting.
        if not self.exited.done():
            self.exited.set_result(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(data)

    def lose(self) -> None:
        """The child is gone (or out of step): fail what it held, and make sure it is dead."""
        self.lost = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(StoreError("the store's writer process stopped"))
        if self.transport is not None and not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()


class WriterProcess:
    """The daemon's side of the writer process.

    Batches are written to the child's stdin in order and answered in the same order, so more
    than one can be in flight: the child starts the next as soon as it has committed one. A
    writer that dies fails the batches it held (their senders get a 5xx and deliver again; a
    keyed event they redeliver is a duplicate if it was committed after all) and is started
    again for the next batch. Each child has its own queue of answers: a dead child, however
    late its end is noticed, fails only what it held, never a batch sent to its successor.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._child: _Child | None = None
        self._secrets_sent = 0
        self._lock = asyncio.Lock()  # one starter at a time

    @property
    def running(self) -> bool:
        """A child is up and in step (if not, the next batch starts one)."""
        return self._child is not None and not self._child.lost

    @property
    def pid(self) -> int | None:
        """The running writer's process id."""
        child = self._child
        if child is None or child.transport is None:
            return None
        return child.transport.get_pid()

    async def start(self) -> None:
        """Start the child and wait until it has its database connection."""
        loop = asyncio.get_running_loop()
        _, child = await loop.subprocess_exec(
            _Child,
            sys.executable,
            "-m",
            "daemon.store.writer_child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        ready: asyncio.Future[bytes] = loop.create_future()
        child.waiting.append(ready)
        try:
            child.send(frame(orjson.dumps({"url": self._url})))
            hello = orjson.loads(await ready)
        except (OSError, StoreError) as exc:
            await _reap(child)
            raise StoreError("the store's writer process did not start") from exc
        if "error" in hello:
            await _reap(child)
            raise StoreError(f"the store's writer process did not start: {hello['error']}")
        self._child, self._secrets_sent = child, 0

    async def dispatch_many(self, requests: Sequence[DispatchRequest]) -> list[Dispatched | None]:
        """`Store.dispatch_many` in the writer process."""
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if not self.running:
            async with self._lock:
                if not self.running:
                    self._child = None
                    await self.start()
        child = self._child
        assert child is not None
        secrets = redactor.registered()[self._secrets_sent :]
        batch = encode_batch(list(requests), secrets)  # a request that cannot be sent
        child.waiting.append(answer)  # fails here, before anything reaches the pipe
        try:
            child.send(batch)  # buffered by the transport: a frame is never half written
        except BaseException:
            child.lose()
            raise
        self._secrets_sent += len(secrets)
        results = decode_results(await answer)
        if isinstance(results, str):
            raise StoreError(results)
        return results

    async def close(self) -> None:
        """Let the child finish the batches it has and exit (end of input), then reap it."""
        async with self._lock:
            child, self._child = self._child, None
            if child is None or child.transport is None:
                return
            stdin = child.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
            try:
                await asyncio.wait_for(asyncio.shield(child.exited), 5)
            except TimeoutError:
                await _reap(child)
            child.transport.close()


async def _reap(child: _Child) -> None:
    if child.transport is None:
        return
    with contextlib.suppress(ProcessLookupError):
        child.transport.kill()
    await child.exited
    child.transport.close()
