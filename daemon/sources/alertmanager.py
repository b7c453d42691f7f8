"""Prometheus Alertmanager webhooks (payload version 4): one event per alert."""

from __future__ import annotations

from typing import Any

from ..spec import AlertmanagerTrigger, parse_matcher
from .envelopes import AlertmanagerEnvelope, first_problem
from .github import WebhookRefused
from .incoming import Incoming


def alert_key(group_key: str, alert: dict[str, Any], status: str) -> str:
    """Idempotency key of one alert notification.

    A repeat notification of the same firing alert (same start) and Alertmanager's own retries
    map to the same key, so they start nothing new; its resolve gets a key of its own.
    """
    return f"alertmanager:{group_key}:{alert.get('fingerprint')}:{alert.get('startsAt')}:{status}"


def split(payload: dict[str, Any]) -> list[Incoming]:
    """The notification's alerts as separate events."""
    if str(payload.get("version")) != "4" or not isinstance(payload.get("alerts"), list):
        raise WebhookRefused(400, "not an Alertmanager v4 notification")
    problem = first_problem(AlertmanagerEnvelope, payload)
    if problem is not None:
        raise WebhookRefused(400, f"malformed Alertmanager notification: {problem}")
    group_key = str(payload.get("groupKey", ""))
    shared = {
        k: payload.get(k)
        for k in (
            "receiver",
            "groupKey",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
        )
    }
    out = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict):
            raise WebhookRefused(400, "alerts must be objects")
        status = "resolved" if alert.get("status") == "resolved" else "firing"
        labels = alert.get("labels") or {}
        out.append(
            Incoming(
                source="alertmanager",
                type=f"alert.{status}",
                payload={**shared, "alert": alert, "status": status},
                key=alert_key(group_key, alert, status),
                meta={
                    "alert": {
                        "name": labels.get("alertname"),
                        "status": status,
                        "labels": labels,
                        "fingerprint": alert.get("fingerprint"),
                    }
                },
            )
        )
    return out


def firing_key(incoming: Incoming) -> str:
    """For a resolved alert: the key its firing notification was stored under."""
    return alert_key(incoming.payload.get("groupKey") or "", incoming.payload["alert"], "firing")


def match(trigger: AlertmanagerTrigger, incoming: Incoming) -> str | None:
    """None when the alert fires `trigger`; otherwise why not."""
    alert = incoming.payload["alert"]
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    status = incoming.payload["status"]
    if status not in trigger.status:
        return f"status {status} not in {trigger.status}"
    if trigger.severity and labels.get("severity") not in trigger.severity:
        return f"severity {labels.get('severity')} not in {trigger.severity}"
    for text in trigger.matchers:
        matcher = parse_matcher(text)
        if not matcher.matches(labels):
            return f"matcher {matcher} does not match"
    return None
