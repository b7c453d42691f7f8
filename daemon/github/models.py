"""The GitHub REST payloads nightshift reads, as pydantic models (unknown fields are ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    # GitHub adds fields often; a model names what the skills use and ignores the rest.
    model_config = ConfigDict(extra="ignore", frozen=True)


class User(_Payload):
    login: str
    type: str = "User"


class Label(_Payload):
    name: str
    color: str = ""
    description: str | None = None


class Issue(_Payload):
    """An issue (the issues API also lists pull requests: `is_pull_request` tells them apart)."""

    number: int
    title: str
    body: str | None = None
    state: str = "open"
    labels: list[Label] = Field(default_factory=list)
    user: User | None = None
    html_url: str = ""
    comments: int = 0
    created_at: datetime | None = None
    pull_request: dict[str, Any] | None = None

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Comment(_Payload):
    id: int
    body: str = ""
    user: User | None = None
    html_url: str = ""


class Repo(_Payload):
    full_name: str = ""


class Ref(_Payload):
    ref: str
    sha: str = ""
    repo: Repo | None = None  # where the branch lives (a fork's, for a fork's pull request)


class PullRequest(_Payload):
    number: int
    title: str
    body: str | None = None
    state: str = "open"
    draft: bool = False
    maintainer_can_modify: bool = False
    html_url: str = ""
    head: Ref
    base: Ref
    user: User | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    merged_at: datetime | None = None


class WorkflowRun(_Payload):
    id: int
    name: str | None = None
    head_branch: str | None = None
    head_sha: str = ""
    status: str | None = None
    conclusion: str | None = None
    event: str = ""
    html_url: str = ""
    run_attempt: int = 1
    workflow_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class JobStep(_Payload):
    name: str
    number: int
    status: str | None = None
    conclusion: str | None = None


class Job(_Payload):
    id: int
    run_id: int | None = None
    name: str
    status: str | None = None
    conclusion: str | None = None
    html_url: str = ""
    steps: list[JobStep] = Field(default_factory=list)

    @property
    def failed_step(self) -> JobStep | None:
        return next((s for s in self.steps if s.conclusion == "failure"), None)


class BranchCommit(_Payload):
    sha: str


class Branch(_Payload):
    name: str
    commit: BranchCommit
    protected: bool = False


class Deployment(_Payload):
    id: int
    sha: str = ""
    ref: str = ""
    environment: str = ""
    description: str | None = None
    created_at: datetime | None = None
