"""The command center's pages: server-rendered HTML (Jinja2, autoescaped) that a small script
of our own (`static/center.js`) keeps live from the streams in `live`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import RunNotFound
from ..runs import RunStatus
from .access import CSRF_COOKIE, TOKEN_COOKIE, Access, Identity, new_csrf_token
from .api import Cards, Supervised
from .automations import listing
from .records import PAGE, event_json, history_page
from .views import line_of

_HERE = Path(__file__).parent
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["line"] = line_of


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page with the browser's CSRF token (made on its first visit)."""
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    identity: Identity | None = request.scope.get("state", {}).get("who")
    html = _ENV.get_template(template).render(csrf=token, who=identity, **context)
    response = HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(CSRF_COOKIE, token, httponly=False, samesite="strict", path="/")
    return response


def routes(site: Supervised, access: Access) -> list[Route | Mount]:
    """`/`, `/runs/{id}`, `/login` and the pinned assets under `/static/`."""
    store = site.store
    cards = Cards(site)

    async def board(request: Request) -> Response:
        return _page(request, "board.html", columns=await cards.board())

    async def run(request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        try:
            row = await store.call(store.get_run, run_id)
        except RunNotFound as exc:
            return _page(request, "missing.html", status=404, message=str(exc))
        (shown,) = await cards.of([row])
        pending = await store.call(store.approvals, run_id, "pending")
        return _page(request, "run.html", run=shown, pending=pending)

    async def automations(request: Request) -> Response:
        return _page(request, "automations.html", **await listing(site, cards))

    async def events(request: Request) -> Response:
        before = request.query_params.get("before")
        found = await store.call(
            store.events_with_decisions, PAGE, int(before) if before and before.isdigit() else None
        )
        listed = [event_json(e, d, payload=False) for e, d in found]
        older = listed[-1]["id"] if len(listed) == PAGE else None
        return _page(request, "events.html", events=listed, older=older)

    async def history(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            shown = await history_page(site, cards, query)
        except ValueError as exc:
            shown = {"runs": [], "next_before": None, "filters": query, "problem": str(exc)}
        names = sorted(site.catalog().automations)
        statuses = [s.value for s in RunStatus]
        return _page(request, "history.html", names=names, statuses=statuses, **shown)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _page(request, "login.html", failed=False)
        # The one form of the center: url-encoded, read without a multipart parser.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = form.get("token", [""])[0]
        if access.token(token) is None:
            return _page(request, "login.html", status=401, failed=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    return [
        Route("/", board),
        Route("/runs/{run_id:int}", run),
        Route("/automations", automations),
        Route("/events", events),
        Route("/history", history),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
