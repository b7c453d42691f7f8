"""GitHub's REST API for skills: a rate-limit-aware client, typed payloads, write limits, push.

Skills import this from their scripts (`from daemon.github import GitHubClient`); the daemon
hands a run `GITHUB_API_URL` and `GITHUB_TOKEN` when the skill asks for GitHub access.
"""

from .client import DEFAULT_API_URL, GitHubClient, GitHubError, RateLimited
from .limits import LimitReached, WriteLimits
from .logs import clean, failing_tests
from .models import (
    Branch,
    Comment,
    Deployment,
    Issue,
    Job,
    JobStep,
    Label,
    PullRequest,
    WorkflowRun,
)
from .push import push_branch

__all__ = [
    "DEFAULT_API_URL",
    "Branch",
    "Comment",
    "Deployment",
    "GitHubClient",
    "GitHubError",
    "Issue",
    "Job",
    "JobStep",
    "Label",
    "LimitReached",
    "PullRequest",
    "RateLimited",
    "WorkflowRun",
    "WriteLimits",
    "clean",
    "failing_tests",
    "push_branch",
]
