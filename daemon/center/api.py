"""The command center's JSON API under `/api/`: what the page itself uses, for scripts and
other tools too (docs/web.md). Reads come from the store; actions go where a Slack reply or
the CLI's go (the run's inbox through the executor, the dispatcher for new runs), acting as
the request's identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import (
    AutomationNotFound,
    EngineUnavailable,
    NightshiftError,
    RunNotFound,
    RunStateError,
    StoreError,
)
from ..runs import RunStatus, envelope_of
from ..store import RunRow
from .access import Identity
from .views import COLUMNS, ENDED_SHOWN, Card, card

if TYPE_CHECKING:
    from ..bus import EventBus
    from ..config import DaemonConfig
    from ..dispatch import Dispatcher
    from ..executor import Executor
    from ..loader import Catalog
    from ..sources import Scheduler
    from ..store import Store


class Supervised(Protocol):
    """What the command center needs of the daemon it shows."""

    config: DaemonConfig
    store: Store
    bus: EventBus
    executor: Executor
    dispatcher: Dispatcher
    scheduler: Scheduler

    def catalog(self) -> Catalog:
        """The automations and skills loaded now."""
        ...


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SteerBody(_Body):
    text: str = Field(min_length=1, max_length=20_000)


class DecideBody(_Body):
    approval_id: str | None = None
    reason: str | None = Field(None, max_length=2_000)


class ReasonBody(_Body):
    reason: str | None = Field(None, max_length=2_000)


class RunNowBody(_Body):
    inputs: dict[str, Any] = Field(default_factory=dict)


def error(status: int, message: str) -> JSONResponse:
    """A refusal as the API answers it: `{"error": "…"}`."""
    return JSONResponse({"error": message}, status_code=status)


async def answer(work: Callable[[], Awaitable[Response]]) -> Response:
    """Run an endpoint, turning nightshift's errors into the client's: 404 for what does not
    exist, 409 for what the run's state does not allow, 503 while the database or the engine
    is away, 400 for a bad request."""
    try:
        return await work()
    except (AutomationNotFound, RunNotFound) as exc:
        return error(404, str(exc))
    except RunStateError as exc:
        return error(409, str(exc))
    except (EngineUnavailable, StoreError) as exc:  # ours, not the client's: try again
        return error(503, str(exc))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error(400, f"{where}: {first['msg']}")
    except (NightshiftError, ValueError) as exc:
        return error(400, str(exc))


async def _body(request: Request, model: type[_Body]) -> Any:
    raw = await request.body()
    return model.model_validate_json(raw or b"{}")


def who(request: Request) -> str:
    """The acting identity's name (set by the access guard)."""
    identity: Identity = request.scope["state"]["who"]
    return identity.name


class Cards:
    """Runs as cards: rows, their automations and their newest steps, read together."""

    def __init__(self, site: Supervised) -> None:
        self._site = site

    async def of(self, runs: list[RunRow]) -> list[Card]:
        store = self._site.store
        last = await store.call(store.last_events, [r.id for r in runs if r.id is not None])
        automations = self._site.catalog().automations
        return [card(r, automations.get(r.automation), last.get(r.id or 0)) for r in runs]

    async def board(self) -> list[dict[str, Any]]:
        """The board's columns, each with its cards (Needs you oldest first)."""
        store = self._site.store
        out = []
        for key, title, states in COLUMNS:
            ended = states[0].finished
            rows = await store.call(
                store.list_runs,
                statuses=[s.value for s in states],
                limit=ENDED_SHOWN if ended else 1_000,
                oldest_first=not ended,
            )
            cards = await self.of(rows)
            out.append({"key": key, "title": title, "runs": [c.to_json() for c in cards]})
        return out


def routes(site: Supervised) -> list[Route]:
    """The `/api/` endpoints (the live streams are in `live`)."""
    store = site.store
    cards = Cards(site)

    async def board(request: Request) -> Response:
        return JSONResponse({"columns": await cards.board()})

    async def runs(request: Request) -> Response:
        async def work() -> Response:
            q = request.query_params
            limit = min(int(q.get("limit", "50")), 500)
            statuses = [RunStatus(s).value for s in q.getlist("status")] or None
            rows = await store.call(
                store.list_runs, automation=q.get("automation"), statuses=statuses, limit=limit
            )
            return JSONResponse({"runs": [c.to_json() for c in await cards.of(rows)]})

        return await answer(work)

    async def run(request: Request) -> Response:
        async def work() -> Response:
            run_id = int(request.path_params["run_id"])
            row = await store.call(store.get_run, run_id)
            (shown,) = await cards.of([row])
            approvals = await store.call(store.approvals, run_id)
            return JSONResponse(
                {
                    "run": shown.to_json(),
                    "inputs": row.inputs,
                    "approvals": [a.model_dump(mode="json") for a in approvals],
                }
            )

        return await answer(work)

    async def events(request: Request) -> Response:
        async def work() -> Response:
            run_id = int(request.path_params["run_id"])
            after = int(request.query_params.get("after", "0"))
            await store.call(store.get_run, run_id)
            rows = await store.call(store.run_events, run_id, after)
            return JSONResponse({"events": [envelope_of(r).to_json() for r in rows]})

        return await answer(work)

    def action(do: Callable[[Request, int], Awaitable[dict[str, Any]]]) -> Any:
        async def handler(request: Request) -> Response:
            async def work() -> Response:
                done = await do(request, int(request.path_params["run_id"]))
                return JSONResponse({"ok": True, **done}, status_code=202)

            return await answer(work)

        return handler

    async def steer(request: Request, run_id: int) -> dict[str, Any]:
        body = await _body(request, SteerBody)
        await site.executor.steer(run_id, body.text, who(request))
        return {}

    def decide(approved: bool) -> Callable[[Request, int], Awaitable[dict[str, Any]]]:
        async def go(request: Request, run_id: int) -> dict[str, Any]:
            body = await _body(request, DecideBody)
            decided = await site.executor.decide(
                run_id, body.approval_id, approved, who(request), body.reason
            )
            return {"approval_id": decided}

        return go

    def lifecycle(verb: str) -> Callable[[Request, int], Awaitable[dict[str, Any]]]:
        async def go(request: Request, run_id: int) -> dict[str, Any]:
            body = await _body(request, ReasonBody)
            if verb == "cancel":
                await site.executor.cancel(run_id, who(request), body.reason)
            elif verb == "retry":
                new = await site.dispatcher.retry(run_id, who(request))
                return {"run_id": new.id}
            else:
                await getattr(site.executor, verb)(run_id, who(request))
            return {}

        return go

    async def run_now(request: Request) -> Response:
        async def work() -> Response:
            body = await _body(request, RunNowBody)
            new = await site.dispatcher.manual(
                request.path_params["name"], body.inputs, who(request)
            )
            return JSONResponse({"run_id": new.id, "status": new.status}, status_code=201)

        return await answer(work)

    run_path = "/api/runs/{run_id:int}"
    return [
        Route("/api/board", board),
        Route("/api/runs", runs),
        Route(run_path, run),
        Route(f"{run_path}/events", events),
        Route(f"{run_path}/steer", action(steer), methods=["POST"]),
        Route(f"{run_path}/approve", action(decide(True)), methods=["POST"]),
        Route(f"{run_path}/deny", action(decide(False)), methods=["POST"]),
        *(
            Route(f"{run_path}/{verb}", action(lifecycle(verb)), methods=["POST"])
            for verb in ("pause", "resume", "cancel", "retry")
        ),
        Route("/api/automations/{name}/run", run_now, methods=["POST"]),
    ]
