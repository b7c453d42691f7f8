"""A Prometheus HTTP API double on 127.0.0.1: range queries answered from series the test
sets per query, Prometheus's error shape for unknown ones, and plain pages (a runbook) beside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ._scripted import Served

# A series as the test gives it: labels and a value for a time (unix seconds).
SeriesSpec = tuple[dict[str, str], Callable[[float], float]]


class PrometheusDouble(Served):
    """`GET /api/v1/query_range` for the queries the test knows; 400 bad_data for others."""

    def __init__(self) -> None:
        self.series: dict[str, list[SeriesSpec]] = {}
        self.pages: dict[str, str] = {}
        self.queries: list[dict[str, str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> Starlette:
        async def query_range(request: Request) -> Response:
            q = dict(request.query_params)
            self.queries.append(q)
            known = self.series.get(q.get("query", ""))
            if known is None:
                return JSONResponse(
                    {
                        "status": "error",
                        "errorType": "bad_data",
                        "error": f"unknown query {q.get('query')!r}",
                    },
                    400,
                )
            start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
            result: list[dict[str, Any]] = []
            for labels, value in known:
                times = [start + i * step for i in range(int((end - start) // step) + 1)]
                result.append({"metric": labels, "values": [[t, f"{value(t):g}"] for t in times]})
            return JSONResponse(
                {"status": "success", "data": {"resultType": "matrix", "result": result}}
            )

        async def page(request: Request) -> Response:
            text = self.pages.get(request.url.path)
            return PlainTextResponse(text) if text is not None else PlainTextResponse("", 404)

        return Starlette(
            routes=[
                Route("/api/v1/query_range", query_range),
                Route("/{path:path}", page),
            ]
        )
