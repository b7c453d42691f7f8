"""A git worktree per run: the agent works on its own branch, never in the original checkout.

`nightshift/<automation>/<run>` is created from the base branch (or the repository's HEAD) in
`<state_dir>/worktrees/<run>`. When the run ends, everything it changed is committed on that
branch and the diff (with its stat) becomes an artifact; the worktree folder is removed (after
the run is reported finished) unless the automation keeps it for review. All git work runs in a
thread: it never stalls the loop.

A run's worktree is on the path to its first command, and `git worktree add` costs four git
processes (10 to 30 ms here). So after a run, a **spare** worktree of the same repository is made
in `<state_dir>/spares/` (detached, clean); the next run moves it into place and puts it on its
own branch at the base as it is then: its ref, HEAD and reflogs written as git would (`refs`)
when the base has not moved, one
`git checkout -B` when it has. Spares are removed when the daemon starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import NightshiftError
from . import refs

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "nightshift",
    "GIT_AUTHOR_EMAIL": "nightshift@localhost",
    "GIT_COMMITTER_NAME": "nightshift",
    "GIT_COMMITTER_EMAIL": "nightshift@localhost",
}
MAX_DIFF = 200_000


class WorkspaceError(NightshiftError):
    """A worktree could not be made or read."""


def _git(repo: Path, *args: str, check: bool = True) -> str:
    import os

    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **_GIT_ENV},
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise WorkspaceError(
            f"git {' '.join(args[:2])} failed in {repo}: {proc.stderr.strip()[:300]}"
        )
    return proc.stdout


@dataclass(frozen=True)
class Worktree:
    """A run's worktree."""

    repo: Path
    path: Path
    branch: str
    base: str  # the commit it started from


@dataclass(frozen=True)
class Outcome:
    """What a run changed."""

    stat: str
    diff: str
    commit: str | None


_repo_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()


def repository_lock(repo: Path) -> threading.Lock:
    """Held while git adds a worktree to `repo`, removes one, or fetches into it: a fetch
    reads every worktree's HEAD, and one half made fails it ("bad object worktrees/…")."""
    key = repo.resolve()
    if key.name == ".git":  # the repository's git directory names the same repository
        key = key.parent
    with _repo_locks_guard:
        return _repo_locks.setdefault(str(key), threading.Lock())


def branch_name(automation: str, run_id: int) -> str:
    return f"nightshift/{automation}/{run_id}"


def _create(
    repo: Path, root: Path, automation: str, run_id: int, base: str | None, spares: Path | None
) -> Worktree:
    # One git process in the common case (each costs milliseconds before the agent's first
    # command): the commit the branch starts from is read back from the ref git just wrote.
    path = root / str(run_id)
    branch = branch_name(automation, run_id)
    if path.exists():  # a retry of the same run id cannot happen; a crashed attempt can
        _discard(repo, path)
    start_point = f"{base or 'HEAD'}^{{commit}}"
    # Inside the spare, HEAD is the spare's own; the repository's is `main-worktree/HEAD`.
    in_spare = start_point if base not in (None, "HEAD") else "main-worktree/HEAD^{commit}"
    start = None if spares is None else _take_spare(repo, spares, path, branch, in_spare, base)
    if start is None:
        root.mkdir(parents=True, exist_ok=True)
        with repository_lock(repo):
            _git(repo, "worktree", "add", "--force", "-B", branch, str(path), start_point)
        start = _branch_commit(path, branch)
    return Worktree(repo, path, branch, start)


def _spare_of(spares: Path, repo: Path) -> Path:
    return spares / hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:16]


def _take_spare(
    repo: Path, spares: Path, path: Path, branch: str, start_point: str, base: str | None
) -> str | None:
    """Move the repository's spare worktree to `path` on `branch` at `start_point`. Returns
    the commit the branch starts at, or None (and nothing left at `path`) when there is no
    spare or it cannot be used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    change = None
    # The move, the relink and the in-place checkout as one change of the repository: a
    # fetch (which reads every worktree's admin folder) never sees it half made.
    with repository_lock(repo):
        try:
            os.rename(_spare_of(spares, repo), path)  # atomic: two runs cannot both take it
        except OSError:
            return None
        try:
            change = refs.Checkout(refs.relink(path), branch, base, start_point)
            placed = refs.checkout_in_place(change)
        except OSError:
            placed = None
            change = None
    try:
        if change is None:
            raise WorkspaceError(f"cannot move the spare worktree to {path}")
        if placed is None:
            _git(
                path, "checkout", "--quiet", "--force", "--ignore-other-worktrees",
                "-B", branch, start_point,
            )  # fmt: skip
            placed = _branch_commit(path, branch)
    except (OSError, WorkspaceError):
        _discard(repo, path)
        return None
    return placed


def _prepare_spare(repo: Path, spares: Path, base: str | None) -> None:
    spare = _spare_of(spares, repo)
    if spare.exists():
        return
    spares.mkdir(parents=True, exist_ok=True)
    # Made aside and moved into place whole: a run never takes a half-made spare.
    # No leading dot: git names the worktree's admin folder (and its refs) after the folder,
    # and turns a leading dot into a leading dash.
    making = spares / f"{spare.name}.making-{uuid.uuid4().hex[:8]}"
    with repository_lock(repo):
        _git(
            repo,
            "worktree",
            "add",
            "--detach",
            "--force",
            str(making),
            f"{base or 'HEAD'}^{{commit}}",
        )
    setting = _git(making, "config", "--get", "core.logAllRefUpdates", check=False)
    refs.keep_logging(refs.admin_of(making), setting)
    with repository_lock(repo):
        try:
            os.rename(making, spare)
            refs.relink(spare)
            moved = True
        except OSError:  # another run's spare got there first
            moved = False
    if not moved:
        _discard(repo, making)


def _discard(repo: Path | None, path: Path) -> None:
    """Remove a worktree folder and git's record of it."""
    if repo is None:
        repo = _common_dir(path)
    if repo is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    with repository_lock(repo):
        _git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        _git(repo, "worktree", "prune", check=False)


def _common_dir(tree: Path) -> Path | None:
    """The git directory a worktree belongs to (`<repo>/.git`, or a bare mirror itself): git
    runs there as in the repository, where the repository's parent folder would be wrong for a
    bare mirror."""
    common = _git(tree, "rev-parse", "--git-common-dir", check=False).strip()
    return (tree / common).resolve() if common else None


def _discard_spares(spares: Path) -> int:
    if not spares.is_dir():
        return 0
    found = list(spares.iterdir())
    for path in found:
        _discard(None, path)
    return len(found)


def _branch_commit(tree: Path, branch: str) -> str:
    """The commit a branch git just placed points to: read from its ref (loose or packed),
    or asked of git where only git can tell (a reftable, anything unexpected)."""
    try:
        sha = refs.resolve(refs.common_of(refs.admin_of(tree)), f"refs/heads/{branch}")
    except (OSError, IndexError):
        sha = None
    return sha or _git(tree, "rev-parse", "HEAD").strip()


def _finish(tree: Worktree, run_id: int) -> Outcome:
    head, dirty = _state(tree)
    if not dirty and head == tree.base:
        return Outcome("", "", None)  # the common case for checks and triage: one process
    if dirty:
        _git(tree.path, "add", "--all")
        _git(tree.path, "commit", "--quiet", "--no-verify", "-m", f"nightshift: run {run_id}")
        head = _git(tree.path, "rev-parse", "HEAD").strip()
    # Whatever the agent committed itself is part of the run's diff too.
    stat = _git(tree.path, "diff", "--stat", tree.base, "HEAD").strip()
    diff = _git(tree.path, "diff", tree.base, "HEAD")
    if len(diff) > MAX_DIFF:
        diff = diff[:MAX_DIFF] + "\n[…diff truncated]\n"
    return Outcome(stat, diff, head)


def _live_diff(tree: Worktree) -> str:
    """What the run changed so far against its base — its commits, its uncommitted edits and
    its new files — without touching the worktree's index (the agent may be using git)."""
    diff = _git(tree.path, "--no-optional-locks", "diff", "--no-color", tree.base)
    others = _git(tree.path, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
    for path in [p for p in others if p][:200]:
        if len(diff) > MAX_DIFF:
            break
        # --no-index exits 1 when the files differ, which a new file always does.
        diff += _git(
            tree.path, "diff", "--no-color", "--no-index", "--", "/dev/null", path, check=False
        )
    if len(diff) > MAX_DIFF:
        diff = diff[:MAX_DIFF] + "\n[…diff truncated]\n"
    return diff


def _state(tree: Worktree) -> tuple[str | None, bool]:
    """(HEAD's commit, whether any file is changed, staged or untracked): one git process."""
    # Without optional locks status only reads: by default it rewrites the index to refresh
    # the stat data of a fresh checkout (~30% of its time, on the path to `finished`).
    status = _git(
        tree.path,
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "--branch",
        "--untracked-files=all",
    )
    head, dirty = None, False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            head = line.removeprefix("# branch.oid ").strip()
        elif not line.startswith("# "):
            dirty = True
    return head, dirty


def _remove(tree: Worktree, outcome: Outcome) -> None:
    with repository_lock(tree.repo):
        _git(tree.repo, "worktree", "remove", "--force", str(tree.path), check=False)
    shutil.rmtree(tree.path, ignore_errors=True)
    if outcome.commit is None:  # nothing to review: the branch goes too
        _git(tree.repo, "branch", "-D", tree.branch, check=False)


def _own_commits(repo: Path, branch: str) -> int:
    """How many commits `branch` holds that no other branch (local or upstream) holds."""
    out = _git(
        repo,
        "rev-list",
        "--count",
        f"refs/heads/{branch}",
        "--not",
        f"--exclude={branch}",
        "--branches",
        "--remotes",
        check=False,
    ).strip()
    return int(out) if out.isdigit() else 1  # unsure: keep the branch


def _salvage(path: Path, ended: bool) -> str | None:
    """Commit what one leftover worktree changed on its branch, then remove it (and its
    branch, when that holds no commit of its own: the run changed nothing); the branch, when
    it is kept."""
    kept = None
    repo = _common_dir(path)
    if repo is not None:
        branch = _git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        _git(path, "add", "--all", check=False)
        if _git(path, "status", "--porcelain", check=False).strip():
            _git(
                path,
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                f"nightshift: run {path.name}" + ("" if ended else " (interrupted)"),
                check=False,
            )
        with repository_lock(repo):
            _git(repo, "worktree", "remove", "--force", str(path), check=False)
            if branch.startswith("nightshift/") and not _own_commits(repo, branch):
                _git(repo, "branch", "-D", branch, check=False)
            elif branch:
                kept = branch
        _git(repo, "worktree", "prune", check=False)
    shutil.rmtree(path, ignore_errors=True)
    return kept


def _salvage_if_there(path: Path, ended: bool) -> str | None:
    return _salvage(path, ended) if path.is_dir() else None


def _salvage_all(root: Path) -> list[Path]:
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        _salvage(path, ended=False)
        removed.append(path)
    return removed


async def salvage(path: Path, *, ended: bool) -> str | None:
    """After a crash: commit what the run's leftover worktree at `path` changed and remove it;
    the branch that keeps its work (None: no worktree there, or it changed nothing). `ended`:
    its agent finished after all, while no daemon listened."""
    return await asyncio.to_thread(_salvage_if_there, path, ended)


async def salvage_all(root: Path) -> list[Path]:
    """Commit and remove every worktree left under `root` (start-up, after a crash)."""
    return await asyncio.to_thread(_salvage_all, root)


async def create(
    repo: Path,
    root: Path,
    automation: str,
    run_id: int,
    base: str | None,
    spares: Path | None = None,
) -> Worktree:
    """Make the run's worktree on its own branch (from the repository's spare in `spares`,
    when there is one)."""
    return await asyncio.to_thread(_create, repo, root, automation, run_id, base, spares)


async def prepare_spare(repo: Path, spares: Path, base: str | None) -> None:
    """Make a spare worktree of `repo` for its next run, unless one is there."""
    await asyncio.to_thread(_prepare_spare, repo, spares, base)


async def discard_spares(spares: Path) -> int:
    """Remove every spare worktree (on start: they may be half-made or of an old config)."""
    return await asyncio.to_thread(_discard_spares, spares)


async def finish(tree: Worktree, run_id: int) -> Outcome:
    """Commit what changed on the run's branch; the diff and its stat."""
    return await asyncio.to_thread(_finish, tree, run_id)


async def live_diff(tree: Worktree) -> str:
    """The run's diff against its base as it stands now (in a thread)."""
    return await asyncio.to_thread(_live_diff, tree)


async def remove(tree: Worktree, outcome: Outcome) -> None:
    """Remove the worktree folder (and the branch, when the run changed nothing)."""
    await asyncio.to_thread(_remove, tree, outcome)
