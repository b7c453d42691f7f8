"""The daemon's HTTP server: webhooks in, health and metrics out.

Every webhook is authenticated first, then stored — event, decisions and runs in one
transaction — and only then answered 2xx. Refused requests are stored nowhere; they are counted
and logged without their payload.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .sources import alertmanager, github, webhooks
from .sources.github import WebhookRefused
from .sources.incoming import Incoming

if TYPE_CHECKING:
    from .app import Daemon

log = structlog.get_logger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise WebhookRefused(413, f"body over {limit} bytes")
    return bytes(body)


def build_web_app(daemon: Daemon) -> Starlette:
    """The ASGI app of the HTTP server."""
    metrics = daemon.metrics
    limit = daemon.config.http.max_body_bytes
    sources = daemon.config.sources

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = daemon.ready.is_set() and not daemon.stopping
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def intake(source: str, request: Request, parse: object) -> Response:
        start = time.perf_counter()
        metrics.events.labels(source, "received").inc()
        try:
            events: list[Incoming] = await parse(request)  # type: ignore[operator]
        except WebhookRefused as exc:
            metrics.events.labels(source, "refused").inc()
            log.warning(
                "webhook refused",
                source=source,
                status=exc.status,
                reason=str(exc),
                client=request.client.host if request.client else None,
            )
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if not events:
            return JSONResponse({"ok": True, "events": []}, status_code=200)
        out = []
        try:
            for incoming in events:
                routed = await daemon.dispatcher.route(incoming)
                outcome = "duplicate" if routed.duplicate else "accepted"
                metrics.events.labels(source, outcome).inc()
                out.append(
                    {
                        "event_id": routed.event_id,
                        "duplicate": routed.duplicate,
                        "runs": [r.id for r in routed.runs],
                    }
                )
        except Exception:
            # Not stored: answer 5xx so the sender delivers it again.
            log.exception("webhook could not be stored", source=source)
            return JSONResponse({"error": "could not store the event; retry"}, status_code=503)
        finally:
            metrics.intake_seconds.labels(source).observe(time.perf_counter() - start)
        fresh = any(not e["duplicate"] for e in out)
        return JSONResponse({"events": out}, status_code=202 if fresh else 200)

    async def parse_github(request: Request) -> list[Incoming]:
        cfg = sources.github
        if cfg is None:
            raise WebhookRefused(404, "the github source is not configured")
        body = await read_body(request, limit)
        github.verify_signature(
            cfg.secret.resolve(), body, request.headers.get("x-hub-signature-256")
        )
        event = request.headers.get("x-github-event")
        if not event:
            raise WebhookRefused(400, "missing X-GitHub-Event")
        if event == "ping":
            return []
        delivery = request.headers.get("x-github-delivery")
        if not delivery:
            raise WebhookRefused(400, "missing X-GitHub-Delivery")
        payload = github.parse_body(body, request.headers.get("content-type", ""))
        return [github.normalise(event, delivery, payload)]

    async def parse_alertmanager(request: Request) -> list[Incoming]:
        cfg = sources.alertmanager
        if cfg is None:
            raise WebhookRefused(404, "the alertmanager source is not configured")
        body = await read_body(request, limit)
        webhooks.check_bearer(request.headers, cfg.token.resolve())
        return alertmanager.split(github.parse_body(body, "application/json"))

    async def parse_generic(request: Request) -> list[Incoming]:
        name = request.path_params["name"]
        cfg = sources.webhooks.get(name)
        if cfg is None:
            raise WebhookRefused(404, f"no webhook source named {name!r}")
        body = await read_body(request, limit)
        webhooks.authenticate(cfg, cfg.secret.resolve(), body, request.headers)
        payload = github.parse_body(body, "application/json")
        return [webhooks.normalise(name, cfg, payload, request.headers)]

    async def slack_events(request: Request) -> Response:
        """Slack's Events API and interactivity over HTTP, v0 signatures verified."""
        cfg = daemon.config.slack
        if cfg is None or cfg.signing_secret is None or daemon.slack_source is None:
            return JSONResponse({"error": "slack events are not configured"}, status_code=404)
        metrics.events.labels("slack", "received").inc()
        try:
            body = await read_body(request, limit)
        except WebhookRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        verifier = SignatureVerifier(cfg.signing_secret.resolve())
        # HMAC over "v0:{timestamp}:{raw body}"; timestamps over 5 minutes old are refused.
        if not verifier.is_valid_request(body, dict(request.headers)):
            metrics.events.labels("slack", "refused").inc()
            log.warning("slack request refused: bad or stale signature")
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            payload = orjson.loads(dict(parse_qsl(body.decode())).get("payload", "{}"))
        else:
            payload = orjson.loads(body)
        if payload.get("type") == "url_verification":
            return JSONResponse({"challenge": payload.get("challenge")})
        await daemon.slack_source.handle_http(payload)
        metrics.events.labels("slack", "accepted").inc()
        return Response(status_code=200)

    async def github_hook(request: Request) -> Response:
        return await intake("github", request, parse_github)

    async def alertmanager_hook(request: Request) -> Response:
        return await intake("alertmanager", request, parse_alertmanager)

    async def generic_hook(request: Request) -> Response:
        return await intake("webhook", request, parse_generic)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/hooks/github", github_hook, methods=["POST"]),
            Route("/hooks/alertmanager", alertmanager_hook, methods=["POST"]),
            Route("/hooks/{name}", generic_hook, methods=["POST"]),
        ],
        exception_handlers={404: not_found},
    )
