"""Who may use the command center, and whether a request that changes something was sent by
the page itself.

On a loopback address there is no login (the machine's users are trusted, as with the control
socket). Bound to any other address, a request needs a configured token — as `Authorization:
Bearer`, or the cookie the login form sets — or the header a trusted reverse proxy sets. A
read-only token sees everything and changes nothing. Every state-changing request carries the
CSRF token of the page (`X-CSRF-Token`, equal to the `ns_csrf` cookie; SameSite=Strict), except
one authenticated by an `Authorization` header, which no browser sends on its own.
"""

from __future__ import annotations

import getpass
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

import structlog
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import DaemonConfig
from ..errors import SecretError

log = structlog.get_logger(__name__)

CSRF_COOKIE = "ns_csrf"
TOKEN_COOKIE = "ns_token"  # noqa: S105 - the cookie's name, not a secret
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without an identity: the login form, and what it needs to render.
_OPEN_PATHS = ("/login", "/static/")


@dataclass(frozen=True)
class Identity:
    """Who a request acts as (`by` in every action it takes)."""

    name: str
    read_only: bool = False
    by_header: bool = False  # authenticated by `Authorization`: not ambient, no CSRF needed


def is_loopback(host: str) -> bool:
    """True when `host` (a bind address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_csrf_token() -> str:
    """A fresh token for a browser's `ns_csrf` cookie."""
    return secrets.token_urlsafe(24)


class Access:
    """Decides who a request is, from the configuration."""

    def __init__(self, config: DaemonConfig) -> None:
        center = config.center
        self.open = is_loopback(config.http.host)
        self._header = center.trusted_header.lower() if center.trusted_header else None
        self._tokens: list[tuple[str, Identity]] = []
        for entry in center.tokens:
            try:
                value = entry.token.resolve(base_dir=config.base_dir)
            except SecretError as exc:
                log.error("command center token unusable", name=entry.name, why=str(exc))
                continue
            if value:
                self._tokens.append((value, Identity(f"web:{entry.name}", entry.read_only)))
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "local"
        self._local = Identity(f"web:{user}")

    def token(self, value: str) -> Identity | None:
        """The identity a token opens, compared in constant time."""
        found = None
        for known, identity in self._tokens:
            if hmac.compare_digest(known.encode(), value.encode()):
                found = identity
        return found

    def identify(self, headers: Headers, cookies: dict[str, str]) -> Identity | None:
        """Who sends this request; None when it must sign in."""
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            found = self.token(auth[7:].strip())
            return None if found is None else Identity(found.name, found.read_only, True)
        if (cookie := cookies.get(TOKEN_COOKIE)) and (found := self.token(cookie)):
            return found
        if self._header is not None and (user := headers.get(self._header, "").strip()):
            return Identity(f"web:{user[:64]}")
        return self._local if self.open else None


class Guard:
    """ASGI middleware in front of the command center: identity, read-only, CSRF."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        path: str = scope["path"]
        identity = self._access.identify(headers, cookies)
        if identity is None and not path.startswith(_OPEN_PATHS):
            if path.startswith("/api/") or scope["method"] not in _SAFE:
                await _refuse(send, 401, "sign in: this command center needs a token")
            else:
                await _redirect(send, "/login")
            return
        if scope["method"] not in _SAFE and not path.startswith(_OPEN_PATHS):
            assert identity is not None
            if identity.read_only:
                await _refuse(send, 403, "a read-only token can change nothing")
                return
            if not identity.by_header and not _csrf_ok(headers, cookies):
                await _refuse(send, 403, "missing or wrong CSRF token (reload the page)")
                return
        scope.setdefault("state", {})["who"] = identity
        await self._app(scope, receive, send)


def _csrf_ok(headers: Headers, cookies: dict[str, str]) -> bool:
    sent, kept = headers.get(CSRF_HEADER, ""), cookies.get(CSRF_COOKIE, "")
    return bool(kept) and hmac.compare_digest(sent.encode(), kept.encode())


async def _refuse(send: Send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode())],
        }
    )
    await send({"type": "http.response.body", "body": b""})
