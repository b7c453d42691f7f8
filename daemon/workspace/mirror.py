"""A cached bare mirror per clone URL, from which runs take their worktrees.

The first run of a repository clones it once (bare) into `<state_dir>/mirrors/<hash>.git`;
later runs only fetch. Upstream branches live under `refs/remotes/origin/*`, so fetching (with
prune) never touches the `nightshift/*` branches that runs leave behind for review. The URL may
carry a token: it never appears in an error message.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from pathlib import Path

from .worktree import WorkspaceError, _git, repository_lock

_locks: dict[str, asyncio.Lock] = {}


def _safe(url: str) -> str:
    """The URL without user info (`https://x-access-token:…@host/…` → `https://host/…`)."""
    return re.sub(r"(?<=://)[^/@]*@", "", url)


def is_url(repository: str) -> bool:
    """True for a clone URL (scheme:// or scp-like git@host:path), False for a local path."""
    return "://" in repository or bool(re.match(r"^[\w.-]+@[\w.-]+:", repository))


def _sync(url: str, cache: Path) -> Path:
    path = cache / f"{hashlib.sha256(_safe(url).encode()).hexdigest()[:16]}.git"
    try:
        if (path / "HEAD").exists():
            with repository_lock(path):
                _git(path, "fetch", "--quiet", "--prune", "origin")
            return path
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        _git(cache, "clone", "--bare", "--quiet", url, str(tmp))
        _git(tmp, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
        _git(tmp, "fetch", "--quiet", "origin")
        _git(tmp, "remote", "set-head", "origin", "--auto")
        tmp.rename(path)  # only a complete mirror gets the real name
        return path
    except WorkspaceError as exc:
        raise WorkspaceError(str(exc).replace(url, _safe(url))) from None


async def mirror(url: str, cache: Path) -> Path:
    """The up-to-date bare mirror of `url` under `cache` (cloned on first use)."""
    lock = _locks.setdefault(_safe(url), asyncio.Lock())
    async with lock:  # one fetch per repository at a time
        return await asyncio.to_thread(_sync, url, cache)
