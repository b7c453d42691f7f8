"""This daemon among the replicas sharing its database: it registers and beats, knows which
others are alive, says whether it may act for a run, and knows when it has been silent long
enough that its agents must be frozen."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable

from .config import ReplicaConfig
from .store import Store


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Membership:
    """One replica's place among those on the database (`replicas` in the config)."""

    def __init__(
        self, store: Store, config: ReplicaConfig, refused: Callable[[], None] = lambda: None
    ) -> None:
        """`refused` is called for each effect refused because another replica holds the
        run (a metric)."""
        # Who this daemon is among those sharing the database (recorded on every run it takes).
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._store = store
        self._config = config
        self._refused = refused
        self._beat_at = time.monotonic()  # the last beat stored
        self._others_at: tuple[float, set[str]] = (-1e9, set())  # live others, when read

    @property
    def every(self) -> float:
        """Seconds between two beats."""
        return self._config.heartbeat.total_seconds()

    async def register(self) -> None:
        """Record this replica (its first beat)."""
        await self._store.call(
            self._store.register_replica, self.id, socket.gethostname(), os.getpid()
        )
        self._beat_at = time.monotonic()

    async def beat(self) -> None:
        """Store a beat; a database that does not answer within a beat raises TimeoutError."""
        async with asyncio.timeout(max(self.every, 1.0)):
            await self._store.call(self._store.beat, self.id)
        self._beat_at = time.monotonic()

    async def forget(self) -> None:
        """Leave: this replica stopped cleanly (its runs were ended or handed over)."""
        await self._store.call(self._store.forget_replica, self.id)

    def beating(self) -> bool:
        """Whether this replica beat lately (within two beats): one that did not may have lost
        runs to another while it was silent."""
        return time.monotonic() - self._beat_at < 2 * self.every

    def silent_for(self) -> float | None:
        """Seconds without a stored beat, once past half of `gone_after` — when another replica
        may soon take this one's runs; None before. Only on a shared database: one SQLite file
        has no other replica to take them."""
        if self._store.engine.dialect.name == "sqlite":
            return None
        silent = time.monotonic() - self._beat_at
        return silent if silent > self._config.gone_after.total_seconds() / 2 else None

    async def live(self) -> set[str]:
        """The replicas alive now: beating, and — on this machine — with a live process (a
        daemon killed with `kill -9` and started again at once is gone, fresh beat or not)."""
        live = await self._store.call(self._store.live_replicas, self._config.gone_after)
        here = socket.gethostname()
        return {r.id for r in live if r.host != here or _process_alive(r.pid)}

    async def others(self) -> set[str]:
        """The other replicas alive now."""
        return await self.live() - {self.id}

    async def holds(self, run_id: int) -> bool:
        """Whether this replica may act for `run_id` now: every external effect of a run (a
        Slack post, a GitHub comment) is made by the replica holding it, and refused
        elsewhere. The run of a replica that is gone (stopped, killed) is held by the one that
        takes it: its recovery while it was executing, or — ended — the first replica to
        claim it here."""
        owner = await self._store.call(self._store.owner_of, run_id)
        if owner is None or owner == self.id:
            return True
        now = time.monotonic()
        if now - self._others_at[0] > self.every:
            self._others_at = (now, await self.others())
        if owner not in self._others_at[1]:
            claim = self._store.claim_ended
            if await self._store.call(claim, run_id, owner, self.id):
                return True
        self._refused()
        return False
