"""The command center's records: received events with what each meant per automation (the
`nightshift explain` answer), and the history of runs, filtered and paged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..runs import RunStatus
from ..store import DecisionRow, EventRow
from .api import Cards, Supervised, answer, error

PAGE = 50


def event_json(event: EventRow, decisions: list[DecisionRow], *, payload: bool) -> dict[str, Any]:
    """An event and its decisions as the API answers them (the payload only when asked)."""
    out = event.model_dump(mode="json", exclude=set() if payload else {"payload"})
    out["decisions"] = [d.model_dump(mode="json", exclude={"id", "event_id"}) for d in decisions]
    return out


def _moment(raw: str | None, field: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{field}: not a date or time ({raw!r}; e.g. 2026-12-01)") from None
    return (
        value
        if value.tzinfo is not None
        else value.replace(tzinfo=datetime.now().astimezone().tzinfo)
    )


async def history_page(site: Supervised, cards: Cards, query: dict[str, str]) -> dict[str, Any]:
    """One page of the history for the filters in `query` (automation, status, trigger,
    repository, since, until, before)."""
    automations: list[str] | None = None
    if name := query.get("automation"):
        automations = [name]
    if repository := query.get("repository"):
        wanted = {
            n for n, a in site.catalog().automations.items() if a.workspace.repository == repository
        }
        automations = sorted(wanted if automations is None else wanted & set(automations))
    status = query.get("status")
    statuses = [RunStatus(status).value] if status else None
    before = query.get("before")
    store = site.store
    rows = await store.call(
        store.history,
        automations=automations,
        statuses=statuses,
        trigger=query.get("trigger") or None,
        since=_moment(query.get("since"), "since"),
        until=_moment(query.get("until"), "until"),
        before_id=int(before) if before else None,
        limit=PAGE + 1,
    )
    page, more = rows[:PAGE], len(rows) > PAGE
    return {
        "runs": [c.to_json() for c in await cards.of(page)],
        "next_before": page[-1].id if more and page else None,
        "filters": {k: v for k, v in query.items() if k != "before" and v},
    }


def routes(site: Supervised) -> list[Route]:
    """`/api/events`, `/api/events/{id}` and `/api/history`."""
    store = site.store
    cards = Cards(site)

    async def events(request: Request) -> Response:
        async def work() -> Response:
            q = request.query_params
            before = q.get("before")
            found = await store.call(
                store.events_with_decisions,
                min(int(q.get("limit", str(PAGE))), 500),
                int(before) if before else None,
                q.get("source") or None,
            )
            return JSONResponse({"events": [event_json(e, d, payload=False) for e, d in found]})

        return await answer(work)

    async def event(request: Request) -> Response:
        event_id = int(request.path_params["event_id"])
        found = await store.call(store.get_event, event_id)
        if found is None:
            return error(404, f"event {event_id} not found")
        return JSONResponse(event_json(*found, payload=True))

    async def history(request: Request) -> Response:
        async def work() -> Response:
            return JSONResponse(await history_page(site, cards, dict(request.query_params)))

        return await answer(work)

    return [
        Route("/api/events", events),
        Route("/api/events/{event_id:int}", event),
        Route("/api/history", history),
    ]
