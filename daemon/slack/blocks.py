"""What runs look like in Slack: the parent message (Block Kit) and thread replies (mrkdwn)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..durations import format_duration
from ..runs import (
    ApprovalDecision,
    ApprovalRequest,
    Artifact,
    Command,
    FileChange,
    Finished,
    Message,
    RunEvent,
    Started,
    SteerReceived,
    Step,
)
from ..store import RunRow, utcnow

EMOJI = {
    "queued": ":hourglass:",
    "running": ":arrow_forward:",
    "waiting": ":raised_hand:",
    "paused": ":double_vertical_bar:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":black_square_for_stop:",
    "interrupted": ":zap:",
    "timed_out": ":alarm_clock:",
}
_MAX_BLOCK_TEXT = 2900  # Slack allows 3000 characters in a section


def _clip(text: str, limit: int = _MAX_BLOCK_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "\n…(truncated)"


def _elapsed(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "not started"
    return format_duration((end or utcnow()) - start) or "0s"


def parent(run: RunRow, links: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The run's parent message: automation, status, trigger, elapsed time, summary, links."""
    emoji = EMOJI.get(run.status, ":grey_question:")
    head = f"{emoji} *{run.automation}* · run {run.id} · *{run.status}*"
    if run.summary:
        head += f"\n{_clip(run.summary, 1500)}"
    context = (
        f"trigger `{run.trigger}` · attempt {run.attempt} · "
        f"elapsed {_elapsed(run.started_at, run.finished_at)}"
    )
    if links:
        context += " · " + " · ".join(f"<{url}|{title}>" for title, url in links)
    return {
        "text": f"{run.automation} · run {run.id} · {run.status}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": head}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def decided(request_text: str, decision: ApprovalDecision, at: datetime) -> dict[str, Any]:
    """The approval request's message once decided: no buttons, who decided what and when."""
    verb = ":white_check_mark: approved" if decision.approved else ":no_entry: denied"
    why = f": {decision.reason}" if decision.reason else ""
    text = f"{request_text}\n{verb} by {decision.by} at {at:%H:%M:%S} UTC{why}"
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}],
    }


def reply(run_id: int, event: RunEvent) -> dict[str, Any] | None:
    """A thread reply for a meaningful step, or None for events that only update the parent."""
    if isinstance(event, Started):
        if event.attempt == 1:
            return None  # the parent message says it
        return {"text": f":repeat: attempt {event.attempt} started (run {run_id})"}
    if isinstance(event, Step):
        return {"text": f"→ *{event.title}*" + (f" — {event.detail}" if event.detail else "")}
    if isinstance(event, Message):
        mark = {"info": "", "warning": ":warning: ", "error": ":x: "}[event.level]
        return {"text": mark + _clip(event.text)}
    if isinstance(event, Command):
        code = "running" if event.exit_code is None else f"exit {event.exit_code}"
        text = f"`$ {_clip(event.command, 300)}` → {code}"
        if event.output_tail and event.exit_code not in (0, None):
            text += f"\n```{_clip(event.output_tail[-1500:], 1500)}```"
        return {"text": text}
    if isinstance(event, FileChange):
        return {"text": f"{event.change} `{event.path}`"}
    if isinstance(event, Artifact):
        text = f":page_facing_up: *{event.title}*" + (f" <{event.url}>" if event.url else "")
        if event.content and event.kind in ("report", "diff"):
            text += f"\n```{_clip(event.content, 2500)}```"
        return {"text": text}
    if isinstance(event, ApprovalRequest):
        value = f"{run_id}:{event.id}"
        text = f":raised_hand: *Approval needed* for `{event.action}`" + (
            f": {event.description}" if event.description else ""
        )
        return {
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}},
                {
                    "type": "actions",
                    "block_id": f"approval:{value}",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "approve",
                            "style": "primary",
                            "text": {"type": "plain_text", "text": "Approve"},
                            "value": value,
                        },
                        {
                            "type": "button",
                            "action_id": "deny",
                            "style": "danger",
                            "text": {"type": "plain_text", "text": "Deny"},
                            "value": value,
                        },
                    ],
                },
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": "or reply `approve` / `deny <reason>` · "
                            f"`nightshift approve {run_id}`",
                        }
                    ],
                },
            ],
        }
    if isinstance(event, ApprovalDecision):
        verb = "approved" if event.approved else "denied"
        why = f": {event.reason}" if event.reason else ""
        return {"text": f"`{event.id}` {verb} by {event.by}{why}"}
    if isinstance(event, SteerReceived):
        return {"text": f":compass: steering from {event.by}: {_clip(event.text, 1000)}"}
    if isinstance(event, Finished):
        emoji = EMOJI.get(event.status.value, "")
        return {
            "text": f"{emoji} *{event.status.value}*"
            + (f": {_clip(event.summary)}" if event.summary else "")
        }
    return None
