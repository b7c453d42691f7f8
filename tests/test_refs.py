"""The ref writer against git itself: a spare put on its branch without git leaves what
`git checkout -B` leaves — the same refs, the same reflog entries — and a repository that
`git fsck` finds whole."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from daemon import workspace
from daemon.workspace import refs
from daemon.workspace.worktree import repository_lock

from .helpers import git, make_repo

GIT_ENV = {"GIT_COMMITTER_NAME": "nightshift", "GIT_COMMITTER_EMAIL": "nightshift@localhost"}


def detached(repo: Path, path: Path) -> Path:
    git(repo, "worktree", "add", "--quiet", "--detach", str(path), "HEAD^{commit}")
    return path


def entries(log: Path) -> list[str]:
    """Reflog lines without their time (seconds and zone), which differ by construction."""
    return [
        re.sub(r"> \d+ [+-]\d{4}\t", "> <when>\t", line) for line in log.read_text().splitlines()
    ]


def git_checkout(tree: Path, branch: str, start: str) -> None:
    import os
    import subprocess

    subprocess.run(
        ["git", "-C", str(tree), "checkout", "--quiet", "--force", "--ignore-other-worktrees",
         "-B", branch, start],
        check=True, env={**os.environ, **GIT_ENV},
    )  # fmt: skip


@pytest.mark.parametrize("setting", ["", "true", "false"])
def test_a_checkout_in_place_writes_what_git_checkout_writes(tmp_path: Path, setting: str) -> None:
    repo = make_repo(tmp_path / "repo")
    if setting:
        git(repo, "config", "core.logAllRefUpdates", setting)
    else:
        git(repo, "config", "--unset", "core.logAllRefUpdates")
    ours, theirs = detached(repo, tmp_path / "ours"), detached(repo, tmp_path / "theirs")
    admin = refs.admin_of(ours)
    refs.keep_logging(admin, setting)
    start = "main-worktree/HEAD^{commit}"
    with repository_lock(repo):
        placed = refs.checkout_in_place(refs.Checkout(admin, "nightshift/fix/1", None, start))
    git_checkout(theirs, "nightshift/fix/2", start)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert placed == head
    assert git(ours, "symbolic-ref", "HEAD").strip() == "refs/heads/nightshift/fix/1"
    assert git(repo, "rev-parse", "nightshift/fix/1").strip() == head
    common = repo / ".git"
    mine = common / "logs" / "refs" / "heads" / "nightshift" / "fix" / "1"
    gits = common / "logs" / "refs" / "heads" / "nightshift" / "fix" / "2"
    assert mine.exists() == gits.exists() == (setting != "false")
    if setting != "false":
        assert entries(mine) == entries(gits)
        ours_head = entries(refs.admin_of(ours) / "logs" / "HEAD")
        theirs_head = entries(refs.admin_of(theirs) / "logs" / "HEAD")
        assert [e.replace("fix/1", "fix/N") for e in ours_head] == [
            e.replace("fix/2", "fix/N") for e in theirs_head
        ]
        shown = git(repo, "reflog", "show", "nightshift/fix/1").splitlines()
        assert shown == [f"{head[:7]} nightshift/fix/1@{{0}}: branch: Created from {start}"]
        walked = git(ours, "reflog", "show", "HEAD").splitlines()
        assert (
            walked[0] == f"{head[:7]} HEAD@{{0}}: checkout: moving from {head} to nightshift/fix/1"
        )
    assert git(repo, "fsck", "--no-progress", "--strict").strip() == ""


def test_nothing_is_written_where_git_must_decide(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    tree = detached(repo, tmp_path / "tree")
    admin = refs.admin_of(tree)
    start = "main-worktree/HEAD^{commit}"
    # A spare made by a build that did not record the setting: git decides.
    assert refs.checkout_in_place(refs.Checkout(admin, "nightshift/a/1", None, start)) is None
    refs.keep_logging(admin, "true")
    git(repo, "branch", "nightshift/a/2")  # a branch that exists: git would reset it
    assert refs.checkout_in_place(refs.Checkout(admin, "nightshift/a/2", None, start)) is None
    lock = repo / ".git" / "refs" / "heads" / "nightshift" / "a" / "3.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")  # someone else is writing it
    assert refs.checkout_in_place(refs.Checkout(admin, "nightshift/a/3", None, start)) is None
    git(repo, "commit", "-q", "--allow-empty", "-m", "moved")  # the base moved on
    assert refs.checkout_in_place(refs.Checkout(admin, "nightshift/a/4", None, start)) is None
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip() == "HEAD"  # still detached
    logs = repo / ".git" / "logs" / "refs" / "heads" / "nightshift" / "a"
    assert sorted(p.name for p in logs.iterdir()) == ["2"]  # git's own, of `git branch`


async def test_taking_a_spare_holds_the_repository_lock_for_the_whole_change(
    tmp_path: Path,
) -> None:
    repo, spares, trees = make_repo(tmp_path / "repo"), tmp_path / "spares", tmp_path / "trees"
    await workspace.prepare_spare(repo, spares, None)
    (spare,) = spares.iterdir()
    lock = repository_lock(repo)
    lock.acquire()
    taking = threading.Thread(
        target=lambda: workspace.worktree._create(repo, trees, "fix", 5, None, spares)
    )
    taking.start()
    taking.join(0.3)
    try:
        assert taking.is_alive() and spare.exists()  # waits for the lock, moves nothing
    finally:
        lock.release()
    taking.join(10)
    assert not spare.exists()
    assert git(trees / "5", "symbolic-ref", "HEAD").strip() == "refs/heads/nightshift/fix/5"
    assert git(repo, "fsck", "--no-progress", "--strict").strip() == ""
