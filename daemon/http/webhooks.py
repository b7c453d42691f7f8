"""The daemon's HTTP server: webhooks in, health and metrics out.

Every webhook is authenticated first, then stored — event, decisions and runs in one
transaction — and only then answered 2xx. Refused requests are stored nowhere; they are counted
and logged without their payload.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..center import Supervised, build_center
from ..errors import SecretError
from ..secrets import SecretRef
from ..sources import Incoming, WebhookRefused, alertmanager, github, stored_text, webhooks

if TYPE_CHECKING:
    from ..config import DaemonConfig
    from ..dispatch import Dispatcher
    from ..metrics import Metrics
    from ..store import Store


_DELIVERY_HEADERS = (b"x-github-delivery", b"webhook-id", b"x-request-id")


class RefusalLog:
    """Refused deliveries into the store, for `nightshift events --refused`: handed to the
    store thread without waiting, and at most `per_second` a second per source, so a flood of
    forgeries costs the store little (the counter in /metrics counts them all). The rate is
    kept per kind of source (github, alertmanager, webhook, slack), never per name a request
    chose: a sender cannot make the limiter's table grow."""

    def __init__(self, store: Store, per_second: int = 20) -> None:
        self._store = store
        self._per_second = per_second
        self._window: dict[str, tuple[int, int]] = {}  # kind -> (second, recorded in it)

    def record(
        self,
        kind: str,
        source: str,
        headers: dict[bytes, bytes],
        status: int,
        reason: str,
        client: Any,
    ) -> None:
        second = int(time.monotonic())
        at, count = self._window.get(kind, (second, 0))
        if at != second:
            count = 0
        if count >= self._per_second:
            return
        self._window[kind] = (second, count + 1)
        delivery = next((headers[h] for h in _DELIVERY_HEADERS if h in headers), None)
        done = self._store.hand_over(
            self._store.record_refusal,
            source,
            delivery.decode("latin-1") if delivery is not None else None,
            status,
            reason,
            client[0] if client else None,
        )
        done.add_done_callback(_log_failure)


def _log_failure(done: Any) -> None:
    if done.exception() is not None:
        log.warning("a refused delivery could not be recorded", error=str(done.exception()))


class Served(Supervised, Protocol):
    """What the HTTP server needs of the daemon it serves (the daemon is one; a test's
    stand-in can be another): what the command center needs, and the intake's parts."""

    config: DaemonConfig
    metrics: Metrics
    dispatcher: Dispatcher
    store: Store
    ready: asyncio.Event
    stopping: bool
    slack_source: Any


log = structlog.get_logger(__name__)


_JSON = (b"content-type", b"application/json")
_HOOKS = "/hooks/"


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """A request's headers by lower-case name, first occurrence winning (as `Headers.get`);
    a tenth of what `Headers` lookups cost on the hot path."""
    out: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        out.setdefault(name, value)
    return out


async def read_body(declared: str | None, receive: Receive, limit: int) -> bytes:
    """The raw body, refusing (413) anything over `limit` bytes without reading it all
    (`declared`: the Content-Length header, if any). A body that stops arriving is the
    server's to end (`asgi.serve`'s body deadline answers 408 and closes the connection)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise WebhookRefused(400, "client disconnected before the body was sent")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise WebhookRefused(413, f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, content: Any, extra: Headers | None = None) -> None:
    """A JSON response, sent straight to the server (no response object on the hot path)."""
    body = orjson.dumps(content)
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if extra is not None:
        headers += extra.raw
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _secret(name: str, ref: SecretRef) -> str:
    """A source's secret, or 503 with the one line that says why the source is unusable:
    a retry may well succeed once its operator sets the variable or writes the file."""
    try:
        return ref.resolve()
    except SecretError as exc:
        raise WebhookRefused(503, f"the {name} source is not usable: {exc}") from None


def source_problems(daemon: Served) -> dict[str, str]:
    """Webhook sources whose secret cannot be resolved now, with why (checked at start-up
    and by /readyz; a delivery to one of them answers 503)."""
    sources = daemon.config.sources
    refs: dict[str, SecretRef] = {}
    if sources.github is not None:
        refs["github"] = sources.github.secret
    if sources.alertmanager is not None:
        refs["alertmanager"] = sources.alertmanager.token
    for name, hook in sources.webhooks.items():
        refs[name] = hook.secret
    out: dict[str, str] = {}
    for name, ref in refs.items():
        try:
            ref.resolve()
        except SecretError as exc:
            out[name] = str(exc)
    return out


def _guarded(app: ASGIApp) -> ASGIApp:
    """A fault no rule foresaw answers 500 and is logged through the daemon's own logging
    (JSON when configured), never as the server's bare traceback."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            log.exception("request failed", path=scope.get("path"), method=scope.get("method"))
            if scope["type"] == "http" and not started:
                await respond(send, 500, {"error": "internal error; see the daemon's log"})

    return guarded


def build_web_app(daemon: Served) -> ASGIApp:
    """The ASGI app of the HTTP server."""
    metrics = daemon.metrics
    limit = daemon.config.http.max_body_bytes
    sources = daemon.config.sources
    for name, why in source_problems(daemon).items():
        log.error("webhook source unusable: its deliveries will get 503", source=name, why=why)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = daemon.ready.is_set() and not daemon.stopping
        unusable = source_problems(daemon)
        engine = await daemon.executor.problem()
        body: dict[str, Any] = {"ready": ready and not unusable and engine is None}
        if unusable:
            body["unusable_sources"] = unusable
        if engine is not None:
            body["engine"] = engine
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    refusals = RefusalLog(daemon.store)
    counter = functools.cache(metrics.events.labels)  # a labelled child costs a lookup
    timers = {s: metrics.intake_seconds.labels(s) for s in ("github", "alertmanager", "webhook")}

    async def intake(scope: Scope, receive: Receive, send: Send) -> None:
        """POST /hooks/<source>: authenticate, store, then answer (the hot path: no
        Starlette request or response objects, which cost as much as the storing)."""
        start = time.perf_counter()
        name = scope["path"][len(_HOOKS) :]
        source = name if name in ("github", "alertmanager") else "webhook"
        if not name or "/" in name:
            await respond(send, 404, {"error": "not found"})
            return
        if scope["method"] != "POST":
            await respond(send, 405, {"error": "use POST"}, Headers({"allow": "POST"}))
            return
        counter(source, "received").inc()
        raw = header_map(scope)
        try:
            length = raw.get(b"content-length")
            body = await read_body(length.decode("latin-1") if length else None, receive, limit)
            if source == "github":
                events = parse_github(raw, body)
            elif source == "alertmanager":
                events = parse_alertmanager(Headers(scope=scope), body)
            else:
                events = parse_generic(name, Headers(scope=scope), body)
        except WebhookRefused as exc:
            counter(source, "refused").inc()
            client = scope.get("client")
            refusals.record(source, name, raw, exc.status, str(exc), client)
            log.warning(
                "webhook refused",
                source=source,
                status=exc.status,
                reason=str(exc),
                client=client[0] if client else None,
            )
            await respond(send, exc.status, {"error": str(exc)})
            return
        except Exception as exc:
            # Parsing depends on the request alone: whatever it raised, the request is at
            # fault, and a 5xx would tell the sender to retry what will always fail.
            counter(source, "refused").inc()
            log.warning("webhook refused: unreadable", source=source, exc_info=exc)
            reason = f"cannot read the delivery ({type(exc).__name__})"
            refusals.record(source, name, raw, 400, reason, scope.get("client"))
            await respond(send, 400, {"error": reason})
            return
        if not events:
            await respond(send, 200, {"ok": True, "events": []})
            return
        out = []
        try:
            for incoming in events:
                routed = await daemon.dispatcher.route(incoming)
                counter(source, "duplicate" if routed.duplicate else "accepted").inc()
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
            await respond(send, 503, {"error": "could not store the event; retry"})
            return
        finally:
            timers[source].observe(time.perf_counter() - start)
        fresh = any(not e["duplicate"] for e in out)
        await respond(send, 202 if fresh else 200, {"events": out})

    def parse_github(raw: dict[bytes, bytes], body: bytes) -> list[Incoming]:
        cfg = sources.github
        if cfg is None:
            raise WebhookRefused(404, "the github source is not configured")

        def header(name: bytes) -> str:
            return raw.get(name, b"").decode("latin-1")

        github.verify_signature(_secret("github", cfg.secret), body, header(b"x-hub-signature-256"))
        event = header(b"x-github-event")
        if not event:
            raise WebhookRefused(400, "missing X-GitHub-Event")
        if event == "ping":
            return []
        delivery = header(b"x-github-delivery")
        if not delivery:
            raise WebhookRefused(400, "missing X-GitHub-Delivery")
        content_type = header(b"content-type")
        payload = github.parse_body(body, content_type)
        github.check_shape(payload)
        form = content_type.startswith("application/x-www-form-urlencoded")
        text = None if form else stored_text(body)
        return [github.normalise(event, delivery, payload, text, body)]

    def parse_alertmanager(headers: Headers, body: bytes) -> list[Incoming]:
        cfg = sources.alertmanager
        if cfg is None:
            raise WebhookRefused(404, "the alertmanager source is not configured")
        webhooks.check_bearer(headers, _secret("alertmanager", cfg.token))
        return alertmanager.split(github.parse_body(body, "application/json"))

    def parse_generic(name: str, headers: Headers, body: bytes) -> list[Incoming]:
        cfg = sources.webhooks.get(name)
        if cfg is None:
            raise WebhookRefused(404, f"no webhook source named {name!r}")
        webhooks.authenticate(cfg, _secret(name, cfg.secret), body, headers)
        payload = github.parse_body(body, "application/json")
        return [webhooks.normalise(name, cfg, payload, headers)]

    async def slack_events(request: Request) -> Response:
        """Slack's Events API and interactivity over HTTP, v0 signatures verified."""
        cfg = daemon.config.slack
        if cfg is None or cfg.signing_secret is None or daemon.slack_source is None:
            return JSONResponse({"error": "slack events are not configured"}, status_code=404)
        metrics.events.labels("slack", "received").inc()
        try:
            body = await read_body(request.headers.get("content-length"), request.receive, limit)
            verifier = SignatureVerifier(_secret("slack", cfg.signing_secret))
        except WebhookRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        # HMAC over "v0:{timestamp}:{raw body}"; timestamps over 5 minutes old are refused.
        try:
            valid = verifier.is_valid_request(body, dict(request.headers))
        except (TypeError, ValueError):  # non-ASCII signature, a timestamp that is no number
            valid = False
        if not valid:
            metrics.events.labels("slack", "refused").inc()
            log.warning("slack request refused: bad or stale signature")
            headers = header_map(request.scope)
            refusals.record("slack", "slack", headers, 401, "invalid signature", request.client)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            if request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                payload = orjson.loads(dict(parse_qsl(body.decode())).get("payload", "{}"))
            else:
                payload = orjson.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        if payload.get("type") == "url_verification":
            return JSONResponse({"challenge": payload.get("challenge")})
        await daemon.slack_source.handle_http(payload)
        metrics.events.labels("slack", "accepted").inc()
        return Response(status_code=200)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("not found", status_code=404)

    rest = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/slack/events", slack_events, methods=["POST"]),
            # The command center takes every other path (its pages, /api/, /static/).
            *([Mount("/", app=build_center(daemon))] if daemon.config.center.enabled else []),
        ],
        exception_handlers={404: not_found},
    )

    # The intake answers every fault itself (400 for the request's, 503 for the store's);
    # the rest goes through the guard.
    guarded_rest = _guarded(rest)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_HOOKS):
            await intake(scope, receive, send)
        else:
            await guarded_rest(scope, receive, send)

    return app
