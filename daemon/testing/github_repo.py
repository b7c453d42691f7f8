"""A repository as the GitHub double holds it: labels, issues, pull requests, workflow runs,
deployments, and a bare git repository as its remote."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeRepo:
    """One repository's state; tests seed it and read the effects back."""

    full_name: str
    html: str
    git_dir: Path | None = None
    default_branch: str = "main"
    labels: list[dict[str, Any]] = field(default_factory=list)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    branches: set[str] = field(default_factory=set)  # only used without a git_dir
    # login -> role (admin, maintain, write, triage, read); others have none
    permissions: dict[str, str] = field(default_factory=dict)
    reactions: list[tuple[str, int, str]] = field(default_factory=list)  # (where, id, content)
    # (pull number, review id) -> that review's inline comments, as tests seed them
    review_comments: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    pull_files: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # as seeded
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # as posted
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    # -- seeding --------------------------------------------------------------------------
    def label(self, name: str, description: str = "", color: str = "ededed") -> None:
        self.labels.append({"name": name, "description": description, "color": color})

    def issue(
        self, title: str, body: str = "", *, labels: list[str] | None = None, user: str = "ann"
    ) -> int:
        number = next(self._numbers)
        self.issues[number] = {
            "id": next(self._ids),
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "labels": [self._label(n) for n in labels or []],
            "user": {"login": user, "type": "User"},
            "html_url": f"{self.html}/issues/{number}",
            "comments": 0,
            "created_at": _now(),
            "author_association": "MEMBER",
        }
        return number

    def pull(
        self,
        head: str,
        *,
        title: str = "",
        state: str = "open",
        base: str | None = None,
        created_at: str | None = None,
        merged_at: str | None = None,
    ) -> int:
        """A pull request that already exists (its head branch need not exist)."""
        number = next(self._numbers)
        self.pulls[number] = self._pull_json(
            number, title or head, head, base or self.default_branch, "", False
        )
        self.pulls[number].update(state=state, created_at=created_at or _now())
        if state == "closed":
            self.pulls[number]["closed_at"] = _now()
            self.pulls[number]["merged_at"] = merged_at
        return number

    def workflow_run(
        self,
        *,
        head_sha: str,
        head_branch: str = "main",
        conclusion: str | None = "failure",
        name: str = "CI",
        jobs: list[dict[str, Any]] | None = None,
        created_at: str | None = None,
        workflow_id: int = 7,
    ) -> dict[str, Any]:
        """A finished workflow run; `jobs` items are {name, conclusion, steps, log}."""
        run_id = next(self._ids)
        run = {
            "id": run_id,
            "name": name,
            "head_branch": head_branch,
            "head_sha": head_sha,
            "status": "completed",
            "conclusion": conclusion,
            "event": "push",
            "workflow_id": workflow_id,
            "run_attempt": 1,
            "html_url": f"{self.html}/actions/runs/{run_id}",
            "created_at": created_at or _now(),
            "updated_at": created_at or _now(),
            "repository": {"full_name": self.full_name},
        }
        self.runs[run_id] = run
        for job in jobs or []:
            job_id = next(self._ids)
            self.jobs[job_id] = {
                "id": job_id,
                "run_id": run_id,
                "name": job["name"],
                "status": "completed",
                "conclusion": job.get("conclusion", conclusion),
                "html_url": f"{self.html}/actions/runs/{run_id}/job/{job_id}",
                "steps": [
                    {"name": s, "number": i + 1, "status": "completed", "conclusion": c}
                    for i, (s, c) in enumerate(job.get("steps", []))
                ],
            }
            self.logs[job_id] = job.get("log", "")
        return run

    def deployment(
        self,
        sha: str,
        environment: str = "production",
        description: str = "",
        created_at: str | None = None,
    ) -> None:
        self.deployments.insert(
            0,
            {
                "id": next(self._ids),
                "sha": sha,
                "ref": sha,
                "environment": environment,
                "description": description,
                "created_at": created_at or _now(),
            },
        )

    # -- reading effects ------------------------------------------------------------------
    def issue_labels(self, number: int) -> list[str]:
        return [label["name"] for label in self.issues[number]["labels"]]

    def issue_comments(self, number: int) -> list[str]:
        return [c["body"] for c in self.comments.get(number, [])]

    def branch_names(self) -> set[str]:
        if self.git_dir is None:
            return set(self.branches)
        out = subprocess.run(
            ["git", "-C", str(self.git_dir), "for-each-ref", "--format=%(refname:short)",
             "refs/heads"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return set(out.split())

    def delete_branch(self, branch: str) -> bool:
        """Delete a branch on the remote; False when there is none."""
        if self._branch_sha(branch) is None:
            return False
        if self.git_dir is None:
            self.branches.discard(branch)
        else:
            subprocess.run(
                ["git", "-C", str(self.git_dir), "update-ref", "-d", f"refs/heads/{branch}"],
                check=True,
            )
        return True

    # -- helpers --------------------------------------------------------------------------
    def _label(self, name: str) -> dict[str, Any]:
        for label in self.labels:
            if label["name"] == name:
                return label
        label = {"name": name, "description": "", "color": "ededed"}
        self.labels.append(label)
        return label

    def _branch_sha(self, branch: str) -> str | None:
        if self.git_dir is None:
            return "0" * 40 if branch in self.branches else None
        proc = subprocess.run(
            ["git", "-C", str(self.git_dir), "rev-parse", "--verify", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _pull_json(
        self, number: int, title: str, head: str, base: str, body: str, draft: bool
    ) -> dict[str, Any]:
        return {
            "id": next(self._ids),
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "draft": draft,
            "html_url": f"{self.html}/pull/{number}",
            "head": {
                "ref": head,
                "sha": self._branch_sha(head) or "",
                "repo": {"full_name": self.full_name},
            },
            "base": {
                "ref": base,
                "sha": self._branch_sha(base) or "",
                "repo": {"full_name": self.full_name},
            },
            "maintainer_can_modify": False,
            "user": {"login": "nightshift-bot", "type": "Bot"},
            "created_at": _now(),
            "closed_at": None,
            "merged_at": None,
        }
