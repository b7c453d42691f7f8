"""The command center: a web page where a team supervises every run at once — the board,
each run's live log and controls — and the JSON API under `/api/` it is built on. Served by
the daemon's HTTP server (`http.webhooks`), behind `access.Guard`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp

from . import api, automations, diffs, live, pages, records
from .access import Access, Guard, Identity, is_loopback
from .api import Supervised, answer, error


def build_center(site: Supervised) -> ASGIApp:
    """The command center's ASGI app over a running daemon."""
    access = Access(site.config)
    app = Starlette(
        routes=[
            *api.routes(site),
            *automations.routes(site),
            *records.routes(site),
            *diffs.routes(site),
            *live.routes(site),
            *pages.routes(site, access),
        ]
    )
    return Guard(app, access)


__all__ = [
    "Access",
    "Identity",
    "Supervised",
    "answer",
    "build_center",
    "error",
    "is_loopback",
]
