"""Generic JSON webhooks on `/hooks/<name>`, authenticated by HMAC or a bearer token."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..config import WebhookSource
from ..spec.automation import WebhookTrigger
from .github import WebhookRefused, same_digest
from .incoming import Incoming


def check_bearer(headers: Any, token: str) -> None:
    """Refuse (401) unless `Authorization: Bearer <token>` matches, compared in constant time."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode()
    ):
        raise WebhookRefused(401, "missing or wrong bearer token")


def authenticate(source: WebhookSource, secret: str, body: bytes, headers: Any) -> None:
    """Refuse (401) unless the request carries a valid signature or token."""
    if source.auth == "bearer":
        check_bearer(headers, secret)
        return
    header = headers.get(source.signature_header)
    if not header:
        raise WebhookRefused(401, f"missing {source.signature_header}")
    given = header.split("=", 1)[1] if header.startswith("sha256=") else header
    if not same_digest(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), given):
        raise WebhookRefused(401, "signature does not match")


def normalise(
    name: str, source: WebhookSource | None, payload: dict[str, Any], headers: Any
) -> Incoming:
    """One delivery as an `Incoming` event (keyed by the id header, when configured)."""
    delivery = headers.get(source.id_header) if source and source.id_header else None
    kind = name
    if source and source.type_field:
        cur: Any = payload
        for part in source.type_field.split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is not None:
            kind = f"{name}.{cur}"
    return Incoming(
        source="webhook",
        type=kind,
        payload=payload,
        key=f"webhook:{name}:{delivery}" if delivery else None,
        meta={"webhook": {"name": name, "delivery": delivery}},
    )


def match(trigger: WebhookTrigger, incoming: Incoming) -> str | None:
    name = incoming.meta["webhook"]["name"]
    return None if trigger.source == name else f"source {name} is not {trigger.source}"
