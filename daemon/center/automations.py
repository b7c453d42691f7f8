"""The command center's automations: each with its triggers, next fire, last run, whether a
person paused it, and the problems of the files as the loader found them (file:line)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..spec import describe_trigger
from .api import Cards, Supervised, answer, who

if TYPE_CHECKING:
    from ..loader import Catalog


async def listing(site: Supervised, cards: Cards) -> dict[str, Any]:
    """Every loaded automation as the page and `GET /api/automations` show it."""
    catalog: Catalog = site.catalog()
    store = site.store
    latest = await store.call(store.latest_runs)
    shown = {c.automation: c for c in await cards.of(list(latest.values()))}
    next_fires = site.scheduler.next_fires()
    paused = site.dispatcher.paused()
    out = []
    for name, automation in sorted(catalog.automations.items()):
        skill = catalog.skills.get(automation.skill)
        held = paused.get(name)
        fire = next_fires.get(name)
        last = shown.get(name)
        out.append(
            {
                "name": name,
                "description": automation.description,
                "enabled": automation.enabled,
                "paused": None if held is None else {"by": held[0], "at": held[1].isoformat()},
                "skill": automation.skill,
                "triggers": [describe_trigger(t) for t in automation.triggers],
                "next_fire": fire.isoformat() if fire is not None and held is None else None,
                "last_run": last.to_json() if last is not None else None,
                "inputs": {
                    key: spec.model_dump(mode="json")
                    for key, spec in (skill.manifest.inputs.items() if skill else ())
                },
                "file": str(catalog.sources.get(name, "")),
            }
        )
    problems = [
        {
            "file": str(p.path),
            "line": p.line,
            "field": p.field,
            "message": p.message,
            "text": str(p),
        }
        for p in catalog.problems
    ]
    return {"automations": out, "problems": problems}


def routes(site: Supervised) -> list[Route]:
    """`/api/automations` and pausing or resuming one."""
    cards = Cards(site)

    async def automations(request: Request) -> Response:
        return JSONResponse(await listing(site, cards))

    def pausing(paused: bool) -> Any:
        async def handler(request: Request) -> Response:
            async def work() -> Response:
                name = request.path_params["name"]
                await site.dispatcher.set_paused(name, paused, who(request))
                return JSONResponse({"ok": True, "paused": paused}, status_code=202)

            return await answer(work)

        return handler

    return [
        Route("/api/automations", automations),
        Route("/api/automations/{name}/pause", pausing(True), methods=["POST"]),
        Route("/api/automations/{name}/resume", pausing(False), methods=["POST"]),
    ]
