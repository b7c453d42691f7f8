"""The control API: how the CLI talks to the running daemon.

It listens only on a Unix socket inside the state directory (mode 0600 in a 0700 folder), so
only the local user who runs the daemon can use it; no TCP port is opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..center import answer, error
from ..errors import RunNotFound
from ..runs import Envelope, Finished, envelope_of
from .serving import serve as serve_asgi

if TYPE_CHECKING:
    from ..bus import EventBus
    from ..config import DaemonConfig
    from ..dispatch import Dispatcher
    from ..executor import Executor
    from ..store import Store


class Controlled(Protocol):
    """What the control API needs of the daemon it controls."""

    config: DaemonConfig
    store: Store
    bus: EventBus
    executor: Executor
    dispatcher: Dispatcher

    def status(self) -> dict[str, Any]:
        """The daemon's state as `GET /v1/status` answers it."""
        ...


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = Field(default_factory=dict)
    by: str = "cli"
    force: bool = False


class SteerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    by: str = "cli"


class DecideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approval_id: str | None = None
    reason: str | None = None
    by: str = "cli"


class CancelBody(BaseModel):
    """Who acts, and why where the action takes a reason (cancel does)."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = None
    by: str = "cli"


def build_app(daemon: Controlled) -> Starlette:
    """The ASGI app over a running daemon."""

    async def body(request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate_json(await request.body() or b"{}")
        except PydanticValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from None

    async def status(request: Request) -> Response:
        return JSONResponse(daemon.status())

    async def trigger(request: Request) -> Response:
        async def go() -> Response:
            b = await body(request, TriggerBody)
            run = await daemon.dispatcher.manual(
                request.path_params["name"], b.inputs, b.by, force=b.force
            )
            return JSONResponse({"run_id": run.id, "status": run.status}, status_code=201)

        return await answer(go)

    async def steer(request: Request) -> Response:
        async def go() -> Response:
            b = await body(request, SteerBody)
            await daemon.executor.steer(int(request.path_params["run_id"]), b.text, b.by)
            return JSONResponse({"ok": True}, status_code=202)

        return await answer(go)

    def decide(approved: bool) -> Any:
        async def handler(request: Request) -> Response:
            async def go() -> Response:
                b = await body(request, DecideBody)
                approval_id = await daemon.executor.decide(
                    int(request.path_params["run_id"]), b.approval_id, approved, b.by, b.reason
                )
                return JSONResponse({"ok": True, "approval_id": approval_id}, status_code=202)

            return await answer(go)

        return handler

    async def cancel(request: Request) -> Response:
        async def go() -> Response:
            b = await body(request, CancelBody)
            await daemon.executor.cancel(int(request.path_params["run_id"]), b.by, b.reason)
            return JSONResponse({"ok": True}, status_code=202)

        return await answer(go)

    def lifecycle(verb: str) -> Any:
        async def handler(request: Request) -> Response:
            async def go() -> Response:
                b = await body(request, CancelBody)
                await getattr(daemon.executor, verb)(int(request.path_params["run_id"]), b.by)
                return JSONResponse({"ok": True}, status_code=202)

            return await answer(go)

        return handler

    async def retry(request: Request) -> Response:
        async def go() -> Response:
            b = await body(request, CancelBody)
            run = await daemon.dispatcher.retry(int(request.path_params["run_id"]), b.by)
            return JSONResponse({"run_id": run.id, "status": run.status}, status_code=201)

        return await answer(go)

    async def events(request: Request) -> Response:
        """The run's log as NDJSON; with follow=1, live until the run finishes."""
        run_id = int(request.path_params["run_id"])
        after = int(request.query_params.get("after", "0"))
        follow = request.query_params.get("follow") in ("1", "true")
        store = daemon.store
        try:
            await store.call(store.get_run, run_id)
        except RunNotFound as exc:
            return error(404, str(exc))

        async def stream() -> AsyncIterator[bytes]:
            with daemon.bus.subscribe(run_id) as sub:
                rows = await store.call(store.run_events, run_id, after)
                last = after
                done = False
                for row in rows:
                    env = envelope_of(row)
                    last = env.seq
                    done = done or isinstance(env.event, Finished)
                    yield _line(env)
                if not follow or done:
                    return
                while True:
                    env = await sub.queue.get()
                    if env.seq <= last:
                        continue
                    last = env.seq
                    yield _line(env)
                    if isinstance(env.event, Finished):
                        return

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return Starlette(
        routes=[
            Route("/v1/status", status),
            Route("/v1/automations/{name}/trigger", trigger, methods=["POST"]),
            Route("/v1/runs/{run_id:int}/events", events),
            Route("/v1/runs/{run_id:int}/steer", steer, methods=["POST"]),
            Route("/v1/runs/{run_id:int}/approve", decide(True), methods=["POST"]),
            Route("/v1/runs/{run_id:int}/deny", decide(False), methods=["POST"]),
            Route("/v1/runs/{run_id:int}/cancel", cancel, methods=["POST"]),
            Route("/v1/runs/{run_id:int}/retry", retry, methods=["POST"]),
            Route("/v1/runs/{run_id:int}/pause", lifecycle("pause"), methods=["POST"]),
            Route("/v1/runs/{run_id:int}/resume", lifecycle("resume"), methods=["POST"]),
        ]
    )


def _line(env: Envelope) -> bytes:
    return json.dumps(env.to_json()).encode() + b"\n"


async def serve(daemon: Controlled, started: asyncio.Event) -> None:
    """Serve the control API on the daemon's Unix socket until cancelled."""
    path = daemon.config.socket_path
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # stale: the state-dir lock already proved no daemon owns it
    await serve_asgi(build_app(daemon), started, uds=path)
