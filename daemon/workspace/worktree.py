"""A git worktree per run: the agent works on its own branch, never in the original checkout.

`nightshift/<automation>/<run>` is created from the base branch (or the repository's HEAD) in
`<state_dir>/worktrees/<run>`. When the run ends, everything it changed is committed on that
branch and the diff (with its stat) becomes an artifact; the worktree folder is removed (after
the run is reported finished) unless the automation keeps it for review. All git work runs in a
thread: it never stalls the loop.

A run's worktree is on the path to its first command, and `git worktree add` costs four git
processes (10 to 30 ms here). So after a run, a **spare** worktree of the same repository is made
in `<state_dir>/spares/` (detached, clean); the next run moves it into place and puts it on its
own branch at the base as it is then: two ref files written when the base has not moved, one
`git checkout -B` when it has. Spares are removed when the daemon starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import NightshiftError

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
    try:
        os.rename(_spare_of(spares, repo), path)  # atomic: two runs cannot both take it
    except OSError:
        return None
    try:
        admin = _relink(path)
        placed = _branch_in_place(admin, branch, base)
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


def _admin_of(tree: Path) -> Path:
    """A worktree's admin folder in its repository (`worktrees/<id>/`), named by its `.git`
    file (gitrepository-layout(5))."""
    return Path((tree / ".git").read_text().split(":", 1)[1].strip())


def _common_of(admin: Path) -> Path:
    """The repository's git directory, named by the admin folder's `commondir` file."""
    return (admin / (admin / "commondir").read_text().strip()).resolve()


def _relink(path: Path) -> Path:
    """Point a moved worktree's admin folder back at it: the `gitdir` file that
    gitrepository-layout(5) documents under `worktrees/<id>/` (what `git worktree repair`
    writes). Returns the admin folder."""
    admin = _admin_of(path)
    (admin / "gitdir").write_text(f"{path / '.git'}\n")
    return admin


def _branch_in_place(admin: Path, branch: str, base: str | None) -> str | None:
    """When the spare already stands at the base's commit (the base has not moved since it was
    made), put it on `branch` by writing the two files `git checkout -B` would change — the
    new branch's ref and the worktree's HEAD — instead of starting git (milliseconds, and a
    stat of every file, before the agent's first command). Returns that commit; None, with
    nothing written, when only git can tell: the base moved, its ref is not plain, the
    repository keeps its refs in a reftable, or a ref is locked."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", branch):
        return None  # a name git would have to judge (branch_name never makes one)
    common = _common_of(admin)
    at = (admin / "HEAD").read_text().strip()
    if not _is_commit_id(at) or _resolve(common, base or "HEAD") != at:
        return None
    ref = common / "refs" / "heads" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not _write_locked(ref, f"{at}\n"):
        return None
    if not _write_locked(admin / "HEAD", f"ref: refs/heads/{branch}\n"):
        ref.unlink(missing_ok=True)
        return None
    return at


def _write_locked(path: Path, text: str) -> bool:
    """Replace `path` whole under git's own lock protocol (`<file>.lock`, made exclusively, then
    renamed over it); False if someone holds the lock."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return True


def _is_commit_id(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _resolve(common: Path, name: str) -> str | None:
    """The object `name` names, read from the ref files gitrepository-layout(5) documents and
    tried in git's own order (a full name, then under refs/, refs/tags/, refs/heads/,
    refs/remotes/); None wherever only git can tell (a reftable, a revision expression)."""
    if _is_commit_id(name):
        return name
    if (common / "reftable").exists() or any(c in name for c in "^~:@{}[]?* \\"):
        return None
    packed: dict[str, str] | None = None
    for candidate in (
        name,
        f"refs/{name}",
        f"refs/tags/{name}",
        f"refs/heads/{name}",
        f"refs/remotes/{name}",
        f"refs/remotes/{name}/HEAD",
    ):
        if candidate != "HEAD" and not candidate.startswith("refs/"):
            continue  # git reads other top-level names (FETCH_HEAD, …) differently
        value, packed = _read_ref(common, candidate, packed)
        if value is not None:
            return value
    return None


def _read_ref(
    common: Path, ref: str, packed: dict[str, str] | None, depth: int = 0
) -> tuple[str | None, dict[str, str] | None]:
    """A ref's object id (a loose file first, then packed-refs; symbolic refs followed)."""
    try:
        text = (common / ref).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        if packed is None:
            packed = _packed_refs(common)
        return packed.get(ref), packed
    if text.startswith("ref: ") and depth < 5:
        return _read_ref(common, text.removeprefix("ref: ").strip(), packed, depth + 1)
    return (text if _is_commit_id(text) else None), packed


def _packed_refs(common: Path) -> dict[str, str]:
    """packed-refs as {ref: object id} (an annotated tag's own id, as a loose ref holds it)."""
    out: dict[str, str] = {}
    try:
        lines = (common / "packed-refs").read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        if line and line[0] not in "#^":
            sha, _, ref = line.partition(" ")
            out[ref.strip()] = sha
    return out


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
    try:
        os.rename(making, spare)
        _relink(spare)
    except OSError:  # another run's spare got there first
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
        sha = _read_ref(_common_of(_admin_of(tree)), f"refs/heads/{branch}", None)[0]
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


def _salvage_all(root: Path, finished: set[int]) -> list[Path]:
    """After a crash: commit what each leftover worktree changed on its branch, then remove it
    (and its branch, when that holds no commit of its own: the run changed nothing)."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for path in sorted(root.iterdir()):
        repo = _common_dir(path)
        if repo is not None:
            branch = _git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
            _git(path, "add", "--all", check=False)
            ended = path.name.isdigit() and int(path.name) in finished
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
            _git(repo, "worktree", "prune", check=False)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


async def salvage_all(root: Path, finished: set[int] | None = None) -> list[Path]:
    """Commit and remove every worktree left under `root` (start-up, after a crash); the
    runs in `finished` ended after all (their script finished while no daemon listened)."""
    return await asyncio.to_thread(_salvage_all, root, finished or set())


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


async def remove(tree: Worktree, outcome: Outcome) -> None:
    """Remove the worktree folder (and the branch, when the run changed nothing)."""
    await asyncio.to_thread(_remove, tree, outcome)
