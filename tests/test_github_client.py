"""The GitHub REST client against the local GitHub API double, through real httpx: typed reads
across pages, rate limits (primary and secondary), write pacing, write limits and pushing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.github import (
    GitHubClient,
    GitHubError,
    LimitReached,
    RateLimited,
    WriteLimits,
    push_branch,
)
from daemon.testing.github import GitHubDouble

from .helpers import git, make_remote, make_repo


@pytest.fixture
async def gh() -> AsyncIterator[GitHubDouble]:
    async with GitHubDouble() as double:
        yield double


class Clock:
    """Virtual time: the client's waits are recorded and advance the clock at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def now(self) -> float:
        return time.time() + sum(self.waits)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(gh: GitHubDouble, clock: Clock, **kwargs: Any) -> GitHubClient:
    kwargs.setdefault("write_interval", 0)
    return GitHubClient(gh.token, gh.base_url, sleep=clock.sleep, clock=clock.now, **kwargs)


async def test_reads_are_typed_and_paged_and_pull_requests_are_not_issues(
    gh: GitHubDouble,
) -> None:
    repo = gh.repo("acme/app")
    repo.label("bug", "Something is broken")
    for n in range(130):
        repo.issue(f"issue {n}")
    repo.pull("feature/x")
    with client(gh, Clock()) as c:
        issues = await asyncio.to_thread(c.issues, "acme/app", limit=500)
        labels = await asyncio.to_thread(c.labels, "acme/app")
    assert len(issues) == 130 and issues[0].title == "issue 129"
    assert [(x.name, x.description) for x in labels] == [("bug", "Something is broken")]
    pages = [p for m, p in gh.calls if p == "/repos/acme/app/issues"]
    assert len(pages) == 2  # 131 items at 100 per page, following the Link header


async def test_secondary_rate_limit_waits_retry_after_then_succeeds(gh: GitHubDouble) -> None:
    gh.repo("acme/app").label("bug")
    gh.rate_limit("secondary", times=2, wait=7)
    clock = Clock()
    with client(gh, clock) as c:
        labels = await asyncio.to_thread(c.labels, "acme/app")
    assert [x.name for x in labels] == ["bug"]
    assert clock.waits == [7.0, 7.0]
    assert len(gh.calls) == 3


async def test_primary_rate_limit_waits_for_the_reset(gh: GitHubDouble) -> None:
    gh.repo("acme/app").label("bug")
    gh.rate_limit("primary", wait=4)
    clock = Clock()
    with client(gh, clock) as c:
        await asyncio.to_thread(c.labels, "acme/app")
    (wait,) = clock.waits
    assert 3 <= wait <= 6  # until x-ratelimit-reset, plus a second of margin


async def test_a_spent_limit_stops_the_next_request_before_it_is_sent(gh: GitHubDouble) -> None:
    gh.repo("acme/app").label("bug")
    gh.remaining = 0  # the answer succeeds but says nothing is left until the reset (1 h)
    clock = Clock()
    with client(gh, clock, max_wait=60) as c:
        await asyncio.to_thread(c.labels, "acme/app")
        with pytest.raises(RateLimited, match="rate limit spent until"):
            await asyncio.to_thread(c.labels, "acme/app")
    assert len(gh.calls) == 1 and clock.waits == []


async def test_a_wait_longer_than_allowed_is_an_error_not_a_hang(gh: GitHubDouble) -> None:
    gh.repo("acme/app")
    gh.rate_limit("secondary", wait=3600)
    clock = Clock()
    with client(gh, clock, max_wait=60) as c:
        with pytest.raises(RateLimited) as err:
            await asyncio.to_thread(c.labels, "acme/app")
    assert clock.waits == []
    assert "retry in 3600s" in str(err.value) and "\n" not in str(err.value)


async def test_secondary_limit_without_headers_backs_off_from_a_minute(
    gh: GitHubDouble,
) -> None:
    gh.repo("acme/app")
    gh._queued += [(403, {}, "You have exceeded a secondary rate limit.")] * 2
    clock = Clock()
    with client(gh, clock) as c:
        await asyncio.to_thread(c.labels, "acme/app")
    assert clock.waits == [60.0, 120.0]


async def test_bad_token_is_one_clear_line_without_the_token(gh: GitHubDouble) -> None:
    gh.repo("acme/app")
    with GitHubClient("ghp_wrong_secret", gh.base_url) as c:
        with pytest.raises(GitHubError) as err:
            await asyncio.to_thread(c.labels, "acme/app")
    assert str(err.value) == "GET /repos/acme/app/labels: HTTP 401: Bad credentials"
    assert err.value.status == 401


async def test_writes_are_paced(gh: GitHubDouble) -> None:
    repo = gh.repo("acme/app")
    number = repo.issue("crash on start")
    clock = Clock()
    with client(gh, clock, write_interval=1.0) as c:
        await asyncio.to_thread(c.add_labels, "acme/app", number, ["bug"])
        await asyncio.to_thread(c.comment, "acme/app", number, "Thanks!")
        await asyncio.to_thread(c.issue, "acme/app", number)  # reads are not paced
    assert len(clock.waits) == 1 and 0.5 < clock.waits[0] <= 1.0
    assert repo.issue_labels(number) == ["bug"]
    assert repo.issue_comments(number) == ["Thanks!"]


async def test_enterprise_base_url_and_job_logs_through_the_redirect() -> None:
    async with GitHubDouble(prefix="/api/v3") as gh:
        run = gh.repo("acme/app").workflow_run(
            head_sha="abc",
            jobs=[{"name": "test", "steps": [("pytest", "failure")], "log": "FAILED t.py::x"}],
        )
        with client(gh, Clock()) as c:
            jobs = await asyncio.to_thread(c.run_jobs, "acme/app", run["id"])
            log = await asyncio.to_thread(c.job_log, "acme/app", jobs[0].id)
            got = await asyncio.to_thread(c.workflow_run, "acme/app", run["id"])
    assert jobs[0].failed_step is not None and jobs[0].failed_step.name == "pytest"
    assert log == "FAILED t.py::x"
    assert got.head_sha == "abc"
    assert all(p.startswith("/api/v3/") for _, p in gh.calls)


async def test_write_limits_count_nightshift_pull_requests_on_github(gh: GitHubDouble) -> None:
    repo = gh.repo("acme/app")
    repo.pull("feature/by-a-person")
    repo.pull("nightshift/deps/a")
    with client(gh, Clock()) as c:
        await asyncio.to_thread(WriteLimits(prs_per_hour=2).check_pull_request, c, "acme/app")
        repo.pull("nightshift/deps/b", state="closed")
        with pytest.raises(LimitReached, match="2 nightshift pull requests opened in the last"):
            await asyncio.to_thread(WriteLimits(prs_per_hour=2).check_pull_request, c, "acme/app")
        with pytest.raises(LimitReached, match="already has 1 open nightshift pull requests"):
            await asyncio.to_thread(
                WriteLimits(prs_per_hour=0, open_prs=1).check_pull_request, c, "acme/app"
            )


async def test_pull_request_needs_a_pushed_head(gh: GitHubDouble, tmp_path: Path) -> None:
    remote, work = make_remote(tmp_path)
    repo = gh.repo("acme/app", git_dir=remote)
    with client(gh, Clock()) as c:
        with pytest.raises(GitHubError, match="HTTP 422"):
            await asyncio.to_thread(
                c.create_pull, "acme/app", title="t", head="nightshift/x", base="main", body=""
            )
        (work / "calc.py").write_text("x = 1\n")
        git(work, "commit", "-qam", "change")
        await asyncio.to_thread(push_branch, work, "nightshift/x", token="ghp_secret")
        pull = await asyncio.to_thread(
            c.create_pull, "acme/app", title="Fix", head="nightshift/x", base="main", body="b"
        )
        updated = await asyncio.to_thread(
            c.update_pull, "acme/app", pull.number, title="Fix add()", body="revised"
        )
    assert pull.draft and pull.head.ref == "nightshift/x" and pull.head.sha
    assert (updated.title, updated.body, updated.draft) == ("Fix add()", "revised", True)
    assert "nightshift/x" in repo.branch_names()


def test_a_failed_push_hides_the_token(tmp_path: Path) -> None:
    work = make_repo(tmp_path / "work")
    git(work, "remote", "add", "origin", "https://ghp_secret@127.0.0.1:9/acme/app.git")
    with pytest.raises(GitHubError) as err:
        push_branch(work, "nightshift/x", token="ghp_secret")
    assert "ghp_secret" not in str(err.value)
