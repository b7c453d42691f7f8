"""A GitHub REST client over httpx that keeps to GitHub's rate-limit rules.

- Primary limit: once `x-ratelimit-remaining` reaches 0, no request goes out before
  `x-ratelimit-reset`; a 403/429 that says the limit is spent waits for the reset too.
- Secondary limits: a 403/429 with `retry-after` waits that long; without any header it waits
  a minute, doubling on each repeat, and gives up after `max_retries`.
- Writes (POST, PATCH, PUT, DELETE) go out one at a time at least `write_interval` apart, as
  GitHub asks of integrations that create content.
- A wait longer than `max_wait` raises `RateLimited` instead of blocking a run for an hour.

The base URL makes it work with GitHub Enterprise Server (`https://ghe.example.com/api/v3`).
The token is sent only as the Authorization header: never in a URL, an error or a log line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ..errors import NightshiftError
from .models import (
    Branch,
    Comment,
    Deployment,
    Issue,
    Job,
    Label,
    PullRequest,
    WorkflowRun,
)

# Standard logging: the client runs inside skills too, where stdout is the protocol and the
# default handler writes to stderr; in the daemon it goes through the daemon's renderer.
log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})
M = TypeVar("M", bound=BaseModel)


class GitHubError(NightshiftError):
    """GitHub refused a request (or could not be reached); the message says which and why."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError):
    """GitHub's rate limit would make the request wait longer than the client may."""

    def __init__(self, message: str, *, wait: float) -> None:
        super().__init__(message, status=429)
        self.wait = wait


def _repo(repo: str) -> str:
    owner, sep, name = repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise GitHubError(f"{repo!r} is not an owner/name repository")
    return f"/repos/{quote(owner)}/{quote(name)}"


class GitHubClient:
    """Synchronous GitHub REST client (skills are plain scripts); one per process is enough."""

    def __init__(
        self,
        token: str | None,
        base_url: str = DEFAULT_API_URL,
        *,
        max_wait: float = 900.0,
        write_interval: float = 1.0,
        max_retries: int = 4,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_wait: Callable[[float, str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "nightshift",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        # `transport`: a test's in-process double (httpx.MockTransport) instead of the network.
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            follow_redirects=True,
            transport=transport,
        )
        self.max_wait = max_wait
        self.write_interval = write_interval
        self.max_retries = max_retries
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._last_write = float("-inf")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> GitHubClient:
        """A client from `GITHUB_API_URL` (default api.github.com) and `GITHUB_TOKEN`."""
        env = os.environ if env is None else env
        interval = env.get("NIGHTSHIFT_GITHUB_WRITE_INTERVAL")
        if interval is not None:
            kwargs.setdefault("write_interval", float(interval))
        return cls(env.get("GITHUB_TOKEN"), env.get("GITHUB_API_URL", DEFAULT_API_URL), **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request loop ---------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One API call with the rate-limit rules applied; raises `GitHubError` on failure."""
        method = method.upper()
        secondary_hits = 0
        for attempt in range(self.max_retries + 1):
            self._before(method, path)
            try:
                resp = self._http.request(method, path, params=params, json=json)
            except httpx.HTTPError as exc:
                if method in _WRITES or attempt == self.max_retries:
                    raise GitHubError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
                self._wait(2.0**attempt, f"{method} {path}: {type(exc).__name__}, retrying")
                continue
            if method in _WRITES:
                self._last_write = self._clock()
            self._note(resp)
            if resp.status_code in (403, 429) and self._rate_limited(resp):
                wait = self._limit_wait(resp, secondary_hits)
                secondary_hits += 1
                if wait > self.max_wait or attempt == self.max_retries:
                    raise RateLimited(
                        f"{method} {path}: GitHub rate limit; retry in {wait:.0f}s", wait=wait
                    )
                self._wait(wait, f"{method} {path}: GitHub rate limit")
                continue
            if resp.status_code >= 500 and method == "GET" and attempt < self.max_retries:
                self._wait(2.0**attempt, f"{method} {path}: HTTP {resp.status_code}, retrying")
                continue
            if resp.is_error:
                raise GitHubError(
                    f"{method} {path}: HTTP {resp.status_code}: {_message(resp)}",
                    status=resp.status_code,
                )
            return resp
        raise GitHubError(f"{method} {path}: gave up after {self.max_retries + 1} attempts")

    def _before(self, method: str, path: str) -> None:
        now = self._clock()
        if self._remaining == 0 and self._reset_at is not None and self._reset_at > now:
            wait = self._reset_at - now + 1
            if wait > self.max_wait:
                raise RateLimited(
                    f"{method} {path}: GitHub rate limit spent until "
                    f"{datetime.fromtimestamp(self._reset_at, UTC):%H:%M:%S} UTC",
                    wait=wait,
                )
            self._wait(wait, "GitHub rate limit spent; waiting for its reset")
            self._remaining = None
        if method in _WRITES:
            gap = self._last_write + self.write_interval - self._clock()
            if gap > 0:
                self._sleep(gap)

    def _note(self, resp: httpx.Response) -> None:
        remaining = resp.headers.get("x-ratelimit-remaining")
        reset = resp.headers.get("x-ratelimit-reset")
        if remaining is not None and remaining.isdigit():
            self._remaining = int(remaining)
        if reset is not None and reset.isdigit():
            self._reset_at = float(reset)

    @staticmethod
    def _rate_limited(resp: httpx.Response) -> bool:
        if resp.status_code == 429 or "retry-after" in resp.headers:
            return True
        if resp.headers.get("x-ratelimit-remaining") == "0":
            return True
        return "rate limit" in _message(resp).lower()

    def _limit_wait(self, resp: httpx.Response, secondary_hits: int) -> float:
        retry_after = resp.headers.get("retry-after", "")
        if retry_after.isdigit():
            return float(retry_after)
        if resp.headers.get("x-ratelimit-remaining") == "0" and self._reset_at is not None:
            return max(self._reset_at - self._clock(), 0.0) + 1
        return 60.0 * float(2**secondary_hits)  # GitHub: at least a minute, then back off

    def _wait(self, seconds: float, why: str) -> None:
        log.info("github wait", extra={"seconds": round(seconds, 1), "why": why})
        if self._on_wait is not None:
            self._on_wait(seconds, why)
        self._sleep(seconds)

    # -- reading --------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def paginate(
        self, path: str, params: Mapping[str, Any] | None = None, *, limit: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Items of a list endpoint across pages (`Link: rel="next"`), at most `limit`."""
        query: Mapping[str, Any] | None = {"per_page": 100, **(params or {})}
        url: str | None = path
        count = 0
        while url is not None:
            resp = self.request("GET", url, params=query)
            body = resp.json()
            # A few endpoints wrap their list: {"total_count": n, "workflow_runs": [...]}
            items = body if isinstance(body, list) else _wrapped(body)
            for item in items:
                yield item
                count += 1
                if count >= limit:
                    return
            nxt = resp.links.get("next", {}).get("url")
            url, query = (nxt, None) if nxt else (None, None)

    def _list(self, model: type[M], path: str, limit: int, **params: Any) -> list[M]:
        clean = {k: v for k, v in params.items() if v is not None}
        return [model.model_validate(i) for i in self.paginate(path, clean, limit=limit)]

    def labels(self, repo: str) -> list[Label]:
        return self._list(Label, f"{_repo(repo)}/labels", 1000)

    def issue(self, repo: str, number: int) -> Issue:
        return Issue.model_validate(self.get(f"{_repo(repo)}/issues/{number}"))

    def issues(
        self, repo: str, *, state: str = "open", labels: str | None = None, limit: int = 200
    ) -> list[Issue]:
        """Issues only: the pull requests GitHub mixes into this list are left out."""
        found = self._list(
            Issue, f"{_repo(repo)}/issues", limit, state=state, labels=labels, sort="created"
        )
        return [i for i in found if not i.is_pull_request]

    def comments(self, repo: str, number: int, limit: int = 100) -> list[Comment]:
        return self._list(Comment, f"{_repo(repo)}/issues/{number}/comments", limit)

    def pulls(
        self,
        repo: str,
        *,
        state: str = "open",
        head: str | None = None,
        base: str | None = None,
        limit: int = 100,
    ) -> list[PullRequest]:
        """Pull requests, newest first (`head` is `owner:branch`, as GitHub wants it)."""
        return self._list(
            PullRequest,
            f"{_repo(repo)}/pulls",
            limit,
            state=state,
            head=head,
            base=base,
            sort="created",
            direction="desc",
        )

    def pull(self, repo: str, number: int) -> PullRequest:
        return PullRequest.model_validate(self.get(f"{_repo(repo)}/pulls/{number}"))

    def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        return WorkflowRun.model_validate(self.get(f"{_repo(repo)}/actions/runs/{run_id}"))

    def workflow_runs(
        self,
        repo: str,
        *,
        branch: str | None = None,
        head_sha: str | None = None,
        status: str | None = None,
        created: str | None = None,
        limit: int = 100,
    ) -> list[WorkflowRun]:
        return self._list(
            WorkflowRun,
            f"{_repo(repo)}/actions/runs",
            limit,
            branch=branch,
            head_sha=head_sha,
            status=status,
            created=created,
        )

    def run_jobs(self, repo: str, run_id: int, *, attempts: str = "latest") -> list[Job]:
        return self._list(Job, f"{_repo(repo)}/actions/runs/{run_id}/jobs", 300, filter=attempts)

    def job_log(self, repo: str, job_id: int) -> str:
        """The job's plain-text log (GitHub answers with a redirect to a short-lived URL)."""
        return self.request("GET", f"{_repo(repo)}/actions/jobs/{job_id}/logs").text

    def commit_date(self, repo: str, sha: str) -> datetime:
        """When a commit was committed (a branch's age is its head commit's)."""
        data = self.get(f"{_repo(repo)}/commits/{sha}")
        stamp = str(data["commit"]["committer"]["date"])
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    def branches(self, repo: str, limit: int = 1000) -> list[Branch]:
        return self._list(Branch, f"{_repo(repo)}/branches", limit)

    def deployments(
        self, repo: str, *, environment: str | None = None, limit: int = 20
    ) -> list[Deployment]:
        return self._list(Deployment, f"{_repo(repo)}/deployments", limit, environment=environment)

    # -- writing --------------------------------------------------------------------------
    def add_labels(self, repo: str, number: int, labels: list[str]) -> list[Label]:
        resp = self.request(
            "POST", f"{_repo(repo)}/issues/{number}/labels", json={"labels": labels}
        )
        return [Label.model_validate(x) for x in resp.json()]

    def create_issue(
        self, repo: str, *, title: str, body: str, labels: list[str] | None = None
    ) -> Issue:
        resp = self.request(
            "POST",
            f"{_repo(repo)}/issues",
            json={"title": title, "body": body, "labels": labels or []},
        )
        return Issue.model_validate(resp.json())

    def comment(self, repo: str, number: int, body: str) -> Comment:
        resp = self.request("POST", f"{_repo(repo)}/issues/{number}/comments", json={"body": body})
        return Comment.model_validate(resp.json())

    def pull_files(self, repo: str, number: int, limit: int = 300) -> list[dict[str, Any]]:
        """A pull request's changed files with their patches (`filename`, `patch`, …)."""
        return list(self.paginate(f"{_repo(repo)}/pulls/{number}/files", limit=limit))

    def create_review(
        self, repo: str, number: int, body: str, comments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Post a review (event COMMENT) with line comments: each `{path, line, body}` on the
        right side of the diff — a normal GitHub review, not a wall of text."""
        review = {
            "event": "COMMENT",
            "body": body,
            "comments": [{**c, "side": c.get("side", "RIGHT")} for c in comments],
        }
        resp = self.request("POST", f"{_repo(repo)}/pulls/{number}/reviews", json=review)
        return dict(resp.json())

    def review_comments(self, repo: str, number: int, review_id: int) -> list[dict[str, Any]]:
        """The inline comments of one submitted review (path, line, diff_hunk, body…)."""
        path = f"{_repo(repo)}/pulls/{number}/reviews/{review_id}/comments"
        return [dict(c) for c in self.paginate(path)]

    def edit_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        """Replace an issue comment's text."""
        path = f"{_repo(repo)}/issues/comments/{comment_id}"
        resp = self.request("PATCH", path, json={"body": body})
        return Comment.model_validate(resp.json())

    def permission(self, repo: str, user: str) -> str:
        """`user`'s role on `repo`: admin, maintain, write, triage, read or none (the
        collaborator-permission API; an unknown user has none)."""
        try:
            resp = self.request("GET", f"{_repo(repo)}/collaborators/{user}/permission")
        except GitHubError as exc:
            if exc.status == 404:
                return "none"
            raise
        data = resp.json()
        return str(data.get("role_name") or data.get("permission") or "none")

    def react(self, repo: str, where: str, target: int, content: str) -> None:
        """Add a reaction (`eyes`, `+1`…) to an issue comment (`issue_comment`), a review
        comment (`review_comment`) or an issue or pull request's body (`issue`)."""
        path = {
            "issue_comment": f"{_repo(repo)}/issues/comments/{target}/reactions",
            "review_comment": f"{_repo(repo)}/pulls/comments/{target}/reactions",
            "issue": f"{_repo(repo)}/issues/{target}/reactions",
        }[where]
        self.request("POST", path, json={"content": content})

    def create_pull(
        self, repo: str, *, title: str, head: str, base: str, body: str, draft: bool = True
    ) -> PullRequest:
        resp = self.request(
            "POST",
            f"{_repo(repo)}/pulls",
            json={"title": title, "head": head, "base": base, "body": body, "draft": draft},
        )
        return PullRequest.model_validate(resp.json())

    def update_pull(self, repo: str, number: int, **fields: Any) -> PullRequest:
        resp = self.request("PATCH", f"{_repo(repo)}/pulls/{number}", json=fields)
        return PullRequest.model_validate(resp.json())

    def delete_branch(self, repo: str, branch: str) -> None:
        self.request("DELETE", f"{_repo(repo)}/git/refs/heads/{quote(branch, safe='/')}")


def _wrapped(body: Any) -> list[Any]:
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, list):
                return value
    return []


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        return str(body.get("message", ""))[:300]
    return ""
