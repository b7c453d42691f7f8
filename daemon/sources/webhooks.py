"""Generic JSON webhooks on `/hooks/<name>`, authenticated by HMAC or a bearer token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import timedelta
from typing import Any

from ..config import WebhookSource
from ..spec import WebhookTrigger
from .github import WebhookRefused, same_digest
from .incoming import Incoming


def check_bearer(headers: Any, token: str) -> None:
    """Refuse (401) unless `Authorization: Bearer <token>` matches, compared in constant time."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode()
    ):
        raise WebhookRefused(401, "missing or wrong bearer token")


def _standard_key(secret: str) -> bytes:
    """Standard Webhooks secrets are base64 after a `whsec_` prefix; others are used as is."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def check_standard(
    secret: str, body: bytes, headers: Any, tolerance: timedelta, now: float | None = None
) -> None:
    """Refuse (401) unless the request is signed as Standard Webhooks sign: HMAC-SHA256 of
    `{webhook-id}.{webhook-timestamp}.{body}`, base64, as one of the space-separated `v1,…`
    signatures, with a timestamp within `tolerance` of now (a captured delivery re-sent
    later is refused, and one re-sent at once has the same webhook-id)."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    given = headers.get("webhook-signature", "")
    if not (msg_id and stamp and given):
        raise WebhookRefused(401, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise WebhookRefused(401, "webhook-timestamp is not a number of seconds")
    skew = abs((time.time() if now is None else now) - int(stamp))
    if skew > tolerance.total_seconds():
        raise WebhookRefused(401, f"webhook-timestamp is {skew:.0f}s from now (a replay?)")
    signed = msg_id.encode("utf-8", "replace") + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(
        hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    ).decode()
    for part in given.split():
        version, _, signature = part.partition(",")
        if version == "v1" and same_digest(expected, signature):
            return
    raise WebhookRefused(401, "signature does not match")


def authenticate(source: WebhookSource, secret: str, body: bytes, headers: Any) -> None:
    """Refuse (401) unless the request carries a valid signature or token."""
    if source.auth == "bearer":
        check_bearer(headers, secret)
        return
    if source.auth == "standard":
        check_standard(secret, body, headers, source.tolerance)
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
    if source is not None and source.auth == "standard":
        delivery = headers.get("webhook-id")
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
