"""The command center's live streams, as server-sent events.

A run's stream replays its stored log after the `Last-Event-ID` the browser sends when it
reconnects (each event's id is its sequence number in the run's log), then follows it live
until the run finishes: a reconnect loses and repeats nothing. The board's stream announces
every event of every run in one line, and each new run within a second of it being stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import RunNotFound
from ..runs import Envelope, Finished, StatusChanged, envelope_of
from .api import Supervised, error
from .views import line_of

_KEEPALIVE = 15.0  # seconds between comments that keep idle connections (and proxies) open
_NEW_RUNS_EVERY = 1.0  # seconds between looks for runs created without an event (queued)
_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def frame(data: Any, event: str, id: int | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        return max(int(raw), 0)
    except ValueError:
        return 0


def _board_line(env: Envelope) -> dict[str, Any]:
    data = env.event.model_dump(mode="json", exclude_none=True)
    line: dict[str, Any] = {"run_id": env.run_id, "seq": env.seq, "type": data["type"]}
    line["line"] = line_of(data)
    if isinstance(env.event, StatusChanged | Finished):
        line["status"] = str(env.event.status)
    return line


def routes(site: Supervised) -> list[Route]:
    """`/api/runs/{id}/stream` and `/api/stream`."""
    store, bus = site.store, site.bus

    async def run_stream(request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        after = _after(request)
        try:
            await store.call(store.get_run, run_id)
        except RunNotFound as exc:
            return error(404, str(exc))

        async def stream() -> AsyncIterator[bytes]:
            # Subscribed before reading the log: nothing stored meanwhile falls between.
            with bus.subscribe(run_id) as sub:
                last, ended = after, False
                for row in await store.call(store.run_events, run_id, after):
                    env = envelope_of(row)
                    last, ended = env.seq, ended or isinstance(env.event, Finished)
                    yield frame(env.to_json(), "run-event", env.seq)
                if not ended and (await store.call(store.get_run, run_id)).finished_at:
                    # Ended: its `finished` is in the log already (a reconnect after the
                    # end), or on its way to this subscription (stored just after the run's
                    # row), and is sent before the end either way.
                    done = await store.call(store.run_events, run_id, 0, "finished")
                    ended = bool(done) and done[-1].seq <= last
                while not ended:
                    try:
                        env = await asyncio.wait_for(sub.queue.get(), _KEEPALIVE)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if env.seq <= last:
                        continue
                    last, ended = env.seq, isinstance(env.event, Finished)
                    yield frame(env.to_json(), "run-event", env.seq)
                yield frame({"run_id": run_id}, "end")  # the page stops reconnecting

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)

    async def board_stream(request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            newest = await store.call(store.list_runs, limit=1)
            known = (newest[0].id or 0) if newest else 0
            idle = 0.0
            with bus.subscribe() as sub:
                yield b": connected\n\n"
                while True:
                    try:
                        env = await asyncio.wait_for(sub.queue.get(), _NEW_RUNS_EVERY)
                    except TimeoutError:
                        idle += _NEW_RUNS_EVERY
                        fresh = await store.call(store.list_runs, limit=1)
                        top = (fresh[0].id or 0) if fresh else 0
                        if top > known:
                            yield frame({"run_ids": list(range(known + 1, top + 1))}, "new")
                            known = top
                        elif idle >= _KEEPALIVE:
                            yield b": keep-alive\n\n"
                            idle = 0.0
                        continue
                    idle = 0.0
                    known = max(known, env.run_id)
                    yield frame(_board_line(env), "run")

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)

    return [
        Route("/api/runs/{run_id:int}/stream", run_stream),
        Route("/api/stream", board_stream),
    ]
