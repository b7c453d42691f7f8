"""Commands under bubblewrap: no network, writes only in the workspace and a private /tmp.

The whole file system is visible read-only; the run's workspace (and, for a worktree, its
repository's git directory, which `git commit` writes to) is writable; /tmp is a fresh tmpfs;
the network namespace is new and empty unless the command was approved for network access.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def available() -> str | None:
    """Path of a working `bwrap`, or None (missing, or user namespaces are not allowed).

    `NIGHTSHIFT_BWRAP` names another binary (a build of its own, or none at all to check what
    happens on a machine without one).
    """
    found = shutil.which(os.environ.get("NIGHTSHIFT_BWRAP", "bwrap"))
    if found is None:
        return None
    probe = subprocess.run(
        [found, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True, timeout=10
    )
    return found if probe.returncode == 0 else None


async def find() -> str | None:
    """`available()` for the event loop: the probe runs in a thread, once; after that the
    answer is known and costs no thread hop (it is asked before every command)."""
    if available.cache_info().currsize:
        return available()
    return await asyncio.to_thread(available)


@lru_cache(maxsize=256)
def git_dir(workdir: Path) -> Path | None:
    """The repository's git directory when `workdir` is a worktree (its `.git` is a file).

    Cached: asked before every command of a run, and a worktree's `.git` never changes.
    """
    marker = workdir / ".git"
    if not marker.is_file():
        return None
    gitdir = Path(marker.read_text().split(":", 1)[1].strip())
    return gitdir.parent.parent if gitdir.parent.name == "worktrees" else None


def wrap(command: str, workdir: Path, *, network: bool, readable: Sequence[Path] = ()) -> list[str]:
    """argv running `command` through `sh -c` inside the sandbox.

    `readable` folders stay visible (read-only) even where the private /tmp would hide them:
    a Python installed under /tmp, say.
    """
    bwrap = available()
    if bwrap is None:
        raise RuntimeError("bubblewrap is not available")
    argv = [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a fresh private tmpfs inside the sandbox
        # Readable folders first: the writable worktree mounted after them stays writable.
        *(arg for path in readable if path.is_dir() for arg in ("--ro-bind", str(path), str(path))),
        "--bind",
        str(workdir),
        str(workdir),
        "--chdir",
        str(workdir),
        "--setenv",
        "HOME",
        "/tmp",  # noqa: S108 - the sandbox's own private /tmp
        "--die-with-parent",
        "--new-session",
    ]
    repo_git = git_dir(workdir)
    if repo_git is not None:
        argv += ["--bind", str(repo_git), str(repo_git)]
    if not network:
        argv.append("--unshare-net")
    return [*argv, "/bin/sh", "-c", command]
