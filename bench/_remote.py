"""Run a test double in a process of its own, as the real service would be.

In the daemon's process a double's CPU time would land on nightshift's critical path: what is
network wait in production (the model thinking, Slack answering) would become work on the
same event loop. `remote(factory)` forks, enters the double there and yields what the parent
needs to reach it (its `base_url`, and for Slack its token).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any


def _serve(factory: Callable[[], Any], conn: Connection) -> None:
    async def main() -> None:
        async with factory() as double:
            conn.send({"base_url": double.base_url, "bot_token": getattr(double, "bot_token", "")})
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told

    asyncio.run(main())


@contextlib.contextmanager
def remote(factory: Callable[[], Any]) -> Iterator[dict[str, str]]:
    """The double made by `factory`, served from a forked process while the block runs."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(factory, child), daemon=True)
    proc.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the double did not start")
        yield parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.kill()
