"""GitHub webhooks: signature check, normalisation and trigger matching."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..spec import GitHubMentionTrigger, GitHubTrigger
from .envelopes import GitHubEnvelope, first_problem
from .incoming import GUARD, Incoming
from .mentions import Mention, find_mention, visible_text


class WebhookRefused(Exception):
    """A delivery that is refused before anything is stored; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def verify_signature(secret: str, body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature-256` (HMAC-SHA256 of the raw body) in constant time."""
    if not header:
        raise WebhookRefused(401, "missing X-Hub-Signature-256")
    scheme, _, given = header.partition("=")
    if scheme != "sha256" or not given:
        raise WebhookRefused(401, "malformed X-Hub-Signature-256")
    if not same_digest(hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), given):
        raise WebhookRefused(401, "signature does not match")


def same_digest(expected: str, given: str) -> bool:
    """Compare a hex digest with what a header carried, in constant time.

    Headers arrive as Latin-1 text, so a forged one can hold any byte; `compare_digest` on
    `str` refuses non-ASCII with a TypeError, so both sides are compared as bytes.
    """
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON payload, sent as JSON or as a form field `payload=` (both GitHub options)."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode())
            data = orjson.loads(form["payload"][0])
        else:
            data = orjson.loads(body)
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise WebhookRefused(400, f"body is not a JSON payload: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "payload must be a JSON object")
    return data


def check_shape(payload: dict[str, Any]) -> None:
    """Refuse (400) a payload whose fields that matching reads have the wrong JSON type."""
    problem = first_problem(GitHubEnvelope, payload)
    if problem is not None:
        raise WebhookRefused(400, f"malformed GitHub payload: {problem}")


# The field that makes each kind of event about one thing at one moment: an object whose
# `updated_at` (or a new id) changes with every event about it, or a push's new head. Events
# not named here (`watch`, `create`, `workflow_dispatch`…) can repeat byte for byte when the
# same thing happens twice, so only their delivery id tells two apart.
_IDENTIFIED_BY = {
    "check_run": "check_run",
    "check_suite": "check_suite",
    "commit_comment": "comment",
    "deployment": "deployment",
    "deployment_status": "deployment_status",
    "discussion": "discussion",
    "discussion_comment": "comment",
    "issue_comment": "comment",
    "issues": "issue",
    "merge_group": "merge_group",
    "pull_request": "pull_request",
    "pull_request_review": "review",
    "pull_request_review_comment": "comment",
    "pull_request_review_thread": "thread",
    "push": "after",
    "release": "release",
    "status": "id",
    "workflow_job": "workflow_job",
    "workflow_run": "workflow_run",
}


def identity(event: str, payload: dict[str, Any], body: bytes) -> str | None:
    """What a delivery is apart from its delivery id, where the payload says it.

    GitHub's signature carries no timestamp, so a captured delivery stays valid for ever;
    re-sent under a new `X-GitHub-Delivery` it would be a new event. The signature covers
    the body's bytes, so a replay is the same bytes: for an event about one object at one
    moment, the body's digest is its identity, and two different events of that kind never
    share one (their object's `updated_at`, id or head differs).
    """
    field = _IDENTIFIED_BY.get(event)
    if field is None or payload.get(field) in (None, "", {}):
        return None
    return f"github:{event}:{hashlib.sha256(body).hexdigest()}"


def normalise(
    event: str,
    delivery: str,
    payload: dict[str, Any],
    text: str | None = None,
    body: bytes | None = None,
) -> Incoming:
    """One GitHub delivery as an `Incoming` event keyed by its delivery id (`text`: the
    payload's JSON as received, when the store may keep it as is; see `stored_text`), with
    its `identity` when the delivered `body` is given."""
    action = payload.get("action")
    repo = (payload.get("repository") or {}).get("full_name")
    return Incoming(
        source="github",
        type=f"{event}.{action}" if action else event,
        payload=payload,
        text=text,
        key=f"github:{delivery}",
        identity=None if body is None else identity(event, payload, body),
        meta={
            "github": {"event": event, "action": action, "delivery": delivery, "repository": repo}
        },
    )


def _branch(payload: dict[str, Any]) -> str | None:
    for path in (
        ("pull_request", "base", "ref"),
        ("workflow_run", "head_branch"),
        ("check_suite", "head_branch"),
        ("check_run", "check_suite", "head_branch"),
        ("workflow_job", "head_branch"),
    ):
        cur: Any = payload
        for part in path:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if isinstance(cur, str):
            return cur
    ref = payload.get("ref")
    if isinstance(ref, str) and ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    return None


def _head_branch(payload: dict[str, Any]) -> str | None:
    """The branch the change comes from (a PR's head), for the own-branch loop guard."""
    pr = payload.get("pull_request")
    if isinstance(pr, dict):
        return (pr.get("head") or {}).get("ref")
    return _branch(payload)


def _conclusion(payload: dict[str, Any]) -> str | None:
    for name in ("workflow_run", "check_suite", "check_run", "workflow_job"):
        obj = payload.get(name)
        if isinstance(obj, dict):
            return obj.get("conclusion")
    return None


def _labels(payload: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for name in ("issue", "pull_request"):
        obj = payload.get(name)
        if isinstance(obj, dict):
            names.update(
                lb.get("name", "") for lb in obj.get("labels") or [] if isinstance(lb, dict)
            )
    label = payload.get("label")
    if isinstance(label, dict) and label.get("name"):
        names.add(label["name"])
    return names


def _association(payload: dict[str, Any]) -> str | None:
    for name in ("comment", "review", "issue", "pull_request"):
        obj = payload.get(name)
        if isinstance(obj, dict) and obj.get("author_association"):
            return str(obj["author_association"])
    return None


def match(
    trigger: GitHubTrigger, incoming: Incoming, *, bot_login: str | None, branch_prefix: str
) -> str | None:
    """None when `incoming` fires `trigger`; otherwise why not (loop guards start with GUARD)."""
    payload = incoming.payload
    gh = incoming.meta["github"]
    if gh["event"] not in trigger.events:
        return f"event {gh['event']} not in {trigger.events}"
    if not trigger.allow_self:
        sender = (payload.get("sender") or {}).get("login")
        if bot_login and sender == bot_login:
            return f"{GUARD}sent by nightshift's own user {sender}"
        head = _head_branch(payload)
        if head and head.startswith(branch_prefix):
            return f"{GUARD}on nightshift's own branch {head}"
    if trigger.actions and gh["action"] not in trigger.actions:
        return f"action {gh['action']} not in {trigger.actions}"
    if trigger.repositories and not any(
        fnmatchcase(gh["repository"] or "", pattern) for pattern in trigger.repositories
    ):
        return f"repository {gh['repository']} not in {trigger.repositories}"
    if trigger.labels and not _labels(payload) & set(trigger.labels):
        return f"none of the labels {trigger.labels}"
    if trigger.branches:
        branch = _branch(payload)
        if branch is None or not any(fnmatchcase(branch, p) for p in trigger.branches):
            return f"branch {branch} not in {trigger.branches}"
    if trigger.conclusions and _conclusion(payload) not in trigger.conclusions:
        return f"conclusion {_conclusion(payload)} not in {trigger.conclusions}"
    allowed = trigger.author_associations
    association = _association(payload)
    # Events with no author (workflow runs, check suites, pushes) come from people who can
    # already push; the association filter is for what outsiders can write (issues, comments).
    if allowed and "*" not in allowed and association is not None and association not in allowed:
        return f"author association {association} not in {allowed}"
    return None


# -- mentions ------------------------------------------------------------------------------
# Where a person can address nightshift: the event, the action that is a new text (never an
# edit or a deletion), and the payload field holding that text.
_MENTION_PLACES = {
    ("issue_comment", "created"): ("comment", "issue"),
    ("pull_request_review_comment", "created"): ("comment", "pull_request"),
    ("pull_request_review", "submitted"): ("review", "pull_request"),
    ("issues", "opened"): ("issue", "issue"),
    ("pull_request", "opened"): ("pull_request", "pull_request"),
}


@dataclass(frozen=True)
class Addressed:
    """A mention found in a delivery: who asked what, where."""

    repository: str
    number: int
    pull_request: bool
    author: str
    comment_id: int | None  # the comment or review that holds it; None for an issue's body
    place: str  # comment, review_comment, review or body
    mention: Mention
    made_by: int | None = None  # on a pull request nightshift made: the run that made it

    @property
    def conversation(self) -> str:
        """The conversation's key: owner/repo#number."""
        return f"{self.repository}#{self.number}"

    def view(self) -> dict[str, Any]:
        """What templates see as `mention`."""
        return {
            "request": self.mention.request,
            "command": self.mention.command,
            "argument": self.mention.argument,
            "author": self.author,
            "repository": self.repository,
            "number": self.number,
            "pull_request": self.pull_request,
            "conversation": self.conversation,
            "hidden": list(self.mention.stripped),
        }


def _made_by(pull: dict[str, Any], branch_prefix: str) -> int | None:
    """The run that made a pull request, read from its head branch `<prefix><automation>/<run>`."""
    head = ((pull.get("head") or {}).get("ref")) or ""
    if not head.startswith(branch_prefix):
        return None
    last = head.rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


def match_mention(
    trigger: GitHubMentionTrigger,
    incoming: Incoming,
    *,
    bot_login: str | None,
    branch_prefix: str = "nightshift/",
) -> Addressed | str:
    """The mention `incoming` addresses to `trigger`'s handle, or why it is none. A review
    submitted on a pull request nightshift made is addressed to it whatever it says: its
    comments are feedback for the run that made the pull request, taken as one message."""
    payload = incoming.payload
    gh = incoming.meta["github"]
    pull = payload.get("pull_request") if isinstance(payload.get("pull_request"), dict) else {}
    made_by = _made_by(pull, branch_prefix) if pull else None
    in_review = (payload.get("comment") or {}).get("pull_request_review_id")
    if made_by is not None and gh["event"] == "pull_request_review_comment" and in_review:
        # Part of a review: taken with the review (`pull_request_review.submitted`).
        return "a review comment on nightshift's pull request comes with its review"
    place = _MENTION_PLACES.get((gh["event"], gh["action"]))
    if place is None:
        return f"{gh['event']}.{gh['action']} is not a new comment, review or opened body"
    holder, subject = payload.get(place[0]), payload.get(place[1])
    if not isinstance(holder, dict) or not isinstance(subject, dict):
        return f"no {place[0]} in the payload"
    if trigger.repositories and not any(
        fnmatchcase(gh["repository"] or "", pattern) for pattern in trigger.repositories
    ):
        return f"repository {gh['repository']} not in {trigger.repositories}"
    user = holder.get("user") or {}
    author = str(user.get("login") or "")
    if bot_login and author.lower() == bot_login.lower():
        return f"{GUARD}written by nightshift's own user {author}"
    if (user.get("type") == "Bot" or author.endswith("[bot]")) and author not in trigger.allow_bots:
        return f"{GUARD}written by the bot {author}"
    found = find_mention(str(holder.get("body") or ""), trigger.handle)
    if made_by is not None and place[0] == "review":
        body, stripped = visible_text(str(holder.get("body") or ""))
        request = " ".join(body.split())
        found = Mention(request, "feedback", "", tuple(stripped))
    if found is None:
        return f"{trigger.handle} is not addressed (outside code and quotes)"
    return Addressed(
        repository=str(gh["repository"]),
        number=int(subject.get("number") or 0),
        pull_request=place[1] == "pull_request" or "pull_request" in subject,
        author=author,
        comment_id=None if place[0] in ("issue", "pull_request") else holder.get("id"),
        place="body" if place[0] in ("issue", "pull_request") else _PLACE[gh["event"]],
        mention=found,
        made_by=made_by,
    )


_PLACE = {
    "issue_comment": "comment",
    "pull_request_review_comment": "review_comment",
    "pull_request_review": "review",
}
