#!/usr/bin/env python3
"""ci-cleanup: flaky tests, stale nightshift branches, closed pull requests' branches.

Everything found goes into one summary; each proposed action waits for its own approval.
Steering (`keep <branch>`, `skip flaky|stale|closed`) only ever removes items.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from daemon.github import GitHubClient, GitHubError, WorkflowRun, failing_tests
from daemon.skillkit import SkillRun

PREFIX = "nightshift/"


@dataclass
class Flake:
    test: str
    sha: str
    failed_run: str


@dataclass
class Action:
    key: str  # flaky, stale, closed
    title: str
    items: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    outcome: str = ""

    def render(self) -> str:
        lines = [f"*{self.title}* ({len(self.items)})"]
        lines += [f"• {i}" + (f" — {self.notes[i]}" if i in self.notes else "") for i in self.items]
        if self.outcome:
            lines.append(f"→ {self.outcome}")
        return "\n".join(lines)


def flakes(gh: GitHubClient, repo: str, days: int) -> list[Flake]:
    """Tests of runs that failed on a commit where the same workflow later passed."""
    since = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")
    runs = gh.workflow_runs(repo, status="completed", created=f">={since}", limit=300)
    by_commit: dict[tuple[int | None, str], list[WorkflowRun]] = defaultdict(list)
    for run in runs:
        by_commit[(run.workflow_id, run.head_sha)].append(run)
    found: list[Flake] = []
    for (_, sha), same in by_commit.items():
        same.sort(key=lambda r: (r.created_at or datetime.min.replace(tzinfo=UTC), r.id))
        passed_at = [i for i, r in enumerate(same) if r.conclusion == "success"]
        for i, run in enumerate(same):
            if run.conclusion == "failure" and any(p > i for p in passed_at):
                for job in gh.run_jobs(repo, run.id):
                    if job.conclusion == "failure":
                        for test in failing_tests(gh.job_log(repo, job.id)):
                            found.append(Flake(test, sha, run.html_url))
    return found


def steer(actions: list[Action], texts: list[str]) -> list[str]:
    taken = []
    for text in texts:
        for found in re.findall(r"\bkeep\s+(\S+)", text, re.I):
            name = found.rstrip(".,;:!?)")
            for action in actions:
                if name in action.items:
                    action.items.remove(name)
            taken.append(f"keep {name}")
        for key in re.findall(r"\bskip\s+(flaky|stale|closed)\b", text, re.I):
            for action in actions:
                if action.key == key.lower():
                    action.items.clear()
            taken.append(f"skip {key.lower()}")
    return taken


def main() -> int:
    run = SkillRun.start()
    inputs = run.inputs
    repo = inputs["repository"]
    gh = GitHubClient.from_env(on_wait=lambda s, why: run.message(f"waiting {s:.0f}s: {why}"))
    try:
        run.step(f"Flaky tests in {repo}'s last {inputs['days']} days of workflow runs")
        found = flakes(gh, repo, inputs["days"])
        flaky = Action("flaky", f"Open an issue for flaky tests (label {inputs['flaky_label']})")
        for f in found:
            if f.test not in flaky.items:
                flaky.items.append(f.test)
                flaky.notes[f.test] = f"failed then passed at {f.sha[:7]}: {f.failed_run}"

        run.step("Branches and pull requests")
        branches = {b.name: b for b in gh.branches(repo)}
        pulls = gh.pulls(repo, state="all", limit=500)
        open_heads = {p.head.ref for p in pulls if p.state == "open"}
        keep = {"main", "master", "develop"}
        closed = Action("closed", "Delete the branches of closed pull requests")
        for p in pulls:
            ref, b = p.head.ref, branches.get(p.head.ref)
            if p.state != "closed" or b is None or b.protected or ref in closed.items:
                continue
            if ref not in keep | open_heads:
                closed.items.append(ref)
                closed.notes[ref] = f"#{p.number} {'merged' if p.merged_at else 'closed'}"
        stale = Action("stale", f"Delete nightshift branches idle over {inputs['stale_days']} days")
        cutoff = datetime.now(UTC) - timedelta(days=inputs["stale_days"])
        for name, b in sorted(branches.items()):
            if name.startswith(PREFIX) and name not in open_heads and name not in closed.items:
                last = gh.commit_date(repo, b.commit.sha)
                if last < cutoff:
                    stale.items.append(name)
                    stale.notes[name] = f"last commit {last:%Y-%m-%d}"

        actions = [a for a in (flaky, stale, closed) if a.items]
        summary = "\n\n".join(a.render() for a in actions) or "nothing to clean up"
        run.artifact("report", f"CI clean-up of {repo}", content=summary)
        run.message(summary)
        for action in actions:
            if taken := steer(actions, run.new_steering()):
                run.message("steering taken: " + "; ".join(taken))
            if not action.items:
                action.outcome = "dropped as steered"
                continue
            decision = run.approve(
                "open_issue" if action.key == "flaky" else "delete_branch",
                action.render(),
                id=f"cleanup-{action.key}",
            )
            # Steering that came while the request waited can only take items out.
            if taken := steer(actions, run.new_steering()):
                run.message("steering taken: " + "; ".join(taken))
            if not decision.approved:
                action.outcome = "not applied" + (f": {decision.reason}" if decision.reason else "")
                continue
            if not action.items:
                action.outcome = "dropped as steered"
                continue
            apply(gh, repo, action, inputs["flaky_label"])
        result = "; ".join(f"{a.key}: {a.outcome}" for a in actions) or "nothing to clean up"
        run.finish("succeeded", f"CI clean-up of {repo}: {result}")
    except GitHubError as exc:
        run.finish("failed", f"GitHub: {exc}")
    finally:
        gh.close()
    return 0


def apply(gh: GitHubClient, repo: str, action: Action, label: str) -> None:
    if action.key == "flaky":
        body = "Tests that failed and then passed on the same commit:\n\n" + "\n".join(
            f"- `{t}` — {action.notes[t]}" for t in action.items
        )
        title = "Flaky tests (found by nightshift)"
        existing = [i for i in gh.issues(repo, labels=label) if i.title == title]
        if existing:
            gh.comment(repo, existing[0].number, body)
            action.outcome = f"updated #{existing[0].number}"
        else:
            issue = gh.create_issue(repo, title=title, body=body, labels=[label])
            action.outcome = f"opened #{issue.number}"
        return
    deleted = []
    for branch in action.items:
        try:
            gh.delete_branch(repo, branch)
            deleted.append(branch)
        except GitHubError as exc:
            action.notes[branch] = f"not deleted: {exc}"
    action.outcome = f"deleted {len(deleted)} branch(es)"


if __name__ == "__main__":
    raise SystemExit(main())
