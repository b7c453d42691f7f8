"""The fields of webhook payloads that nightshift reads, as pydantic models.

A delivery can be authentic and still malformed (a sender's bug, a hand-written test, a proxy
that rewrote it). Checking the fields trigger matching reads — and only those: everything else
is the skill's business — turns such a body into a 400 with the field and the reason, instead of
an exception deep in matching that the sender would be told to retry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError


class _Shape(BaseModel):
    # Senders add fields all the time: name what is read, ignore the rest.
    model_config = ConfigDict(extra="ignore")


class _Named(_Shape):
    name: str | None = None


class _Login(_Shape):
    login: str | None = None


class _Repository(_Shape):
    full_name: str | None = None


class _Ref(_Shape):
    ref: str | None = None


class _Subject(_Shape):
    """A comment, review, workflow run, check suite or job (a job's `labels` are runner
    labels, plain strings, and are not read)."""

    author_association: str | None = None
    head: _Ref | None = None
    base: _Ref | None = None
    head_branch: str | None = None
    conclusion: str | None = None


class _Labelled(_Subject):
    """An issue or pull request."""

    labels: list[_Named] | None = None


class _CheckRun(_Subject):
    check_suite: _Subject | None = None


class GitHubEnvelope(_Shape):
    """What trigger matching reads of a GitHub webhook payload."""

    action: str | None = None
    ref: str | None = None
    repository: _Repository | None = None
    sender: _Login | None = None
    label: _Named | None = None
    issue: _Labelled | None = None
    pull_request: _Labelled | None = None
    comment: _Subject | None = None
    review: _Subject | None = None
    workflow_run: _Subject | None = None
    workflow_job: _Subject | None = None
    check_suite: _Subject | None = None
    check_run: _CheckRun | None = None


class _Alert(_Shape):
    status: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    startsAt: str | None = None  # Alertmanager's own camelCase names
    endsAt: str | None = None
    fingerprint: str | None = None
    generatorURL: str | None = None


class AlertmanagerEnvelope(_Shape):
    """An Alertmanager webhook notification (payload version 4)."""

    version: str | int
    groupKey: str = ""
    status: str | None = None
    receiver: str | None = None
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str | None = None
    alerts: list[_Alert]


def first_problem(model: type[BaseModel], payload: dict[str, Any]) -> str | None:
    """None when `payload` has the shape `model` names; else the first wrong field, as
    `field.path: what was expected` (the one line a sender needs to fix its side)."""
    try:
        model.model_validate(payload)
    except PydanticValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{where}: {err['msg']}{more}"
    return None
