"""Git refs read and written without starting git, for the one change on a run's path to its
first command: putting a spare worktree on the run's branch when the base has not moved.

What is written is what `git checkout -B <branch> <start>` writes in that case, in the files
gitrepository-layout(5) documents: the branch's ref, the worktree's HEAD, and both reflog
entries (`branch: Created from <start>`, `checkout: moving from <commit> to <branch>`), each
file replaced under git's own lock protocol. Wherever only git can tell what it would do (a
reftable, a ref that is not plain, a branch that exists, a lock someone holds), nothing is
written and the caller runs git.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

# Whom git names in the reflog: the committer nightshift's own git commands run as.
IDENT = "nightshift <nightshift@localhost>"
# The file in a spare's admin folder that keeps whether its repository logs ref updates
# (core.logAllRefUpdates, read by git when the spare was made).
_LOGGING = "nightshift-logallrefupdates"


@dataclass(frozen=True)
class Checkout:
    """A worktree to put on `branch` at the commit its HEAD stands on."""

    admin: Path  # the worktree's admin folder, `<common>/worktrees/<id>/`
    branch: str  # e.g. nightshift/fix/7
    base: str | None  # the name the branch starts from (None: the repository's HEAD)
    start_point: str  # the start point as given to git (the branch reflog's wording)


def keep_logging(admin: Path, setting: str) -> None:
    """Record a spare's `core.logAllRefUpdates` (as `git config` printed it, empty if unset)."""
    (admin / _LOGGING).write_text(setting.strip())


def checkout_in_place(change: Checkout) -> str | None:
    """Put the worktree on its branch as `git checkout -B` would, when the base still names
    the commit its HEAD stands on. Returns that commit; None, with nothing written, when
    only git can tell. The caller holds the repository's lock."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", change.branch):
        return None  # a name git would have to judge (branch_name never makes one)
    admin = change.admin
    try:
        logging = (admin / _LOGGING).read_text()
    except FileNotFoundError:
        return None  # a spare made by another build: git knows
    common = common_of(admin)
    at = (admin / "HEAD").read_text().strip()
    if not is_commit_id(at) or resolve(common, change.base or "HEAD") != at:
        return None
    ref = common / "refs" / "heads" / change.branch
    if resolve(common, f"refs/heads/{change.branch}") is not None:
        return None  # git would reset it ("branch: Reset to …"): let git
    ref.parent.mkdir(parents=True, exist_ok=True)
    if not write_locked(ref, f"{at}\n"):
        return None
    if not write_locked(admin / "HEAD", f"ref: refs/heads/{change.branch}\n"):
        ref.unlink(missing_ok=True)
        return None
    # A worktree has a work tree, so git's default is to log; only an explicit false stops it.
    if logging.lower() not in ("false", "no", "off", "0"):
        zero = "0" * len(at)
        _append_log(
            common / "logs" / "refs" / "heads" / change.branch,
            zero,
            at,
            f"branch: Created from {change.start_point}",
        )
        _append_log(
            admin / "logs" / "HEAD", at, at, f"checkout: moving from {at} to {change.branch}"
        )
    return at


def _append_log(log: Path, old: str, new: str, message: str) -> None:
    """One reflog entry as git writes it: old and new ids, who, when (seconds and the local
    offset), a tab, the message."""
    now = time.time()
    offset = time.localtime(now).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    zone = f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"{old} {new} {IDENT} {int(now)} {zone}\t{message}\n")


def admin_of(tree: Path) -> Path:
    """A worktree's admin folder in its repository (`worktrees/<id>/`), named by its `.git`
    file (gitrepository-layout(5))."""
    return Path((tree / ".git").read_text().split(":", 1)[1].strip())


def common_of(admin: Path) -> Path:
    """The repository's git directory, named by the admin folder's `commondir` file."""
    return (admin / (admin / "commondir").read_text().strip()).resolve()


def relink(path: Path) -> Path:
    """Point a moved worktree's admin folder back at it: the `gitdir` file that
    gitrepository-layout(5) documents under `worktrees/<id>/` (what `git worktree repair`
    writes). Returns the admin folder."""
    admin = admin_of(path)
    (admin / "gitdir").write_text(f"{path / '.git'}\n")
    return admin


def write_locked(path: Path, text: str) -> bool:
    """Replace `path` whole under git's own lock protocol (`<file>.lock`, made exclusively,
    then renamed over it); False if someone holds the lock."""
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


def is_commit_id(text: str) -> bool:
    """A full object id (SHA-1 or SHA-256), lower-case hex."""
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def resolve(common: Path, name: str) -> str | None:
    """The object `name` names, read from the ref files gitrepository-layout(5) documents and
    tried in git's own order (a full name, then under refs/, refs/tags/, refs/heads/,
    refs/remotes/); None wherever only git can tell (a reftable, a revision expression)."""
    if is_commit_id(name):
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
    return (text if is_commit_id(text) else None), packed


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
