"""The writer process: dispatched events are redacted and written off the daemon's process.

Storing an event before its 2xx costs more Python than the HTTP server does to answer it, and
in one process both share one GIL. So the daemon hands each group-commit batch to a child
(`python -m daemon.store.writer`) over a pipe and awaits its answer; the request path keeps
its core. The child holds its own connection to the same database (SQLite in WAL mode, or
PostgreSQL) and writes with the same `Store.dispatch_many` the in-process path uses, so the
transaction, its guards and its results are the same either way.

The database URL (it may hold a password) goes over the pipe, never on the command line;
secret values travel the same way so the child redacts what the daemon would.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import deque
from collections.abc import Sequence

import orjson
import structlog

from ..errors import StoreError
from ..secrets import redactor
from .store import Dispatched, DispatchRequest, Store
from .wire import (
    decode_batch,
    decode_results,
    encode_batch,
    encode_error,
    encode_results,
    frame,
    read_frame,
    read_frame_sync,
)

log = structlog.get_logger(__name__)


class WriterProcess:
    """The daemon's side of the writer process.

    Batches are written to the child's stdin in order and answered in the same order, so more
    than one can be in flight: the child starts the next as soon as it has committed one. A
    writer that dies fails the batches it held (their senders get a 5xx and deliver again; a
    keyed event they redeliver is a duplicate if it was committed after all) and is started
    again for the next batch.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[bytes]] = deque()
        self._secrets_sent = 0
        self._lock = asyncio.Lock()  # one starter, one frame written at a time

    @property
    def pid(self) -> int | None:
        """The running writer's process id."""
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Start the child and wait until it has its database connection."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon.store.writer",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(frame(orjson.dumps({"url": self._url})))
            await proc.stdin.drain()
            ready = orjson.loads(await read_frame(proc.stdout))
        except (OSError, asyncio.IncompleteReadError) as exc:
            await _reap(proc)
            raise StoreError("the store's writer process did not start") from exc
        if "error" in ready:
            await _reap(proc)
            raise StoreError(f"the store's writer process did not start: {ready['error']}")
        # Each child has its own queue of answers: a dead child's reader, however late it
        # notices, fails only what that child held, never a batch sent to its successor.
        self._proc, self._secrets_sent, self._waiting = proc, 0, deque()
        self._reader = asyncio.create_task(
            self._read(proc, self._waiting), name="event-writer-answers"
        )

    async def _read(
        self, proc: asyncio.subprocess.Process, waiting: deque[asyncio.Future[bytes]]
    ) -> None:
        assert proc.stdout is not None
        try:
            while True:
                content = await read_frame(proc.stdout)
                answer = waiting.popleft()
                if not answer.done():  # its sender may have been cancelled meanwhile
                    answer.set_result(content)
        except (OSError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            self._lose(proc, waiting)

    def _lose(
        self, proc: asyncio.subprocess.Process, waiting: deque[asyncio.Future[bytes]]
    ) -> None:
        """The child is gone (or out of step): fail what it held; the next batch restarts it."""
        if self._proc is proc:
            self._proc = None
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_exception(StoreError("the store's writer process stopped"))
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    async def dispatch_many(self, requests: Sequence[DispatchRequest]) -> list[Dispatched | None]:
        """`Store.dispatch_many` in the writer process."""
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                await self.start()
            proc, waiting = self._proc, self._waiting
            assert proc is not None
            assert proc.stdin is not None
            secrets = redactor.registered()[self._secrets_sent :]
            batch = encode_batch(list(requests), secrets)  # a request that cannot be sent
            waiting.append(answer)  # fails here, before anything reaches the pipe
            try:
                proc.stdin.write(batch)
                await proc.stdin.drain()
            except BaseException:
                self._lose(proc, waiting)  # a frame half written leaves the pipe out of step
                raise
            self._secrets_sent += len(secrets)
        results = decode_results(await answer)
        if isinstance(results, str):
            raise StoreError(results)
        return results

    async def close(self) -> None:
        """Let the child finish the batches it has and exit (end of input), then reap it."""
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                await _reap(proc)
            if self._reader is not None:
                await self._reader


async def _reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


def main() -> None:
    """The child: read batches on stdin, write each in one transaction, answer on stdout."""
    # The daemon stops it by closing its input; a Ctrl-C or SIGTERM to the process group must
    # not cut a transaction short while the daemon is still shutting down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    hello = read_frame_sync(stdin)
    if hello is None:
        return
    try:
        store = Store(orjson.loads(hello)["url"], checkpoint=False)
    except Exception as exc:
        stdout.write(frame(orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})))
        stdout.flush()
        return
    stdout.write(frame(b'{"ready":true}'))
    stdout.flush()
    try:
        while (content := read_frame_sync(stdin)) is not None:
            try:
                requests, secrets = decode_batch(content)
                for value in secrets:
                    redactor.register(value)
                out = encode_results(store.dispatch_many(requests))
            except Exception as exc:
                # Nothing of the batch is stored (one transaction); the message may quote
                # parameters, so it is redacted before it leaves.
                out = encode_error(redactor.redact(f"{type(exc).__name__}: {exc}"))
            stdout.write(out)
            stdout.flush()
    finally:
        store.close()


if __name__ == "__main__":
    main()
