"""Finding agent processes a crashed daemon left behind.

Every agent process gets `NIGHTSHIFT_WORKDIR=<the folder it works in>` (`<state>/runs/<id>`, or
`<state>/worktrees/<id>` for a run in a worktree) in its environment (and its
children inherit it), so after a crash the restarted daemon can find and stop exactly the
processes of the runs it marks interrupted. Linux (/proc) only; elsewhere it finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

MARKER = "NIGHTSHIFT_WORKDIR"


def orphans_of(*workdirs: Path) -> list[int]:
    """PIDs of live processes whose environment marks them as belonging to one of `workdirs`
    (one pass over /proc, however many)."""
    needles = {f"{MARKER}={workdir}".encode() for workdir in workdirs}
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if not needles.isdisjoint(env.split(b"\0")):
            found.append(int(entry.name))
    return found


def kill_orphans(*workdirs: Path) -> list[int]:
    """SIGKILL every process left behind by the run working in one of `workdirs`; return their
    PIDs."""
    pids = orphans_of(*workdirs)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


@contextlib.contextmanager
def watch_children_with_pidfd() -> Iterator[None]:
    """On Python 3.11, wait for child processes through pidfds instead of a thread each,
    while the block runs (the previous watcher comes back after it).

    3.11's default (ThreadedChildWatcher) starts a thread per subprocess, and starting a thread
    blocks the event loop until the thread runs: under load that was the largest cost of an
    agent's command. 3.12 chooses pidfds by itself; older kernels keep the default.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        previous = policy.get_child_watcher()
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        policy.set_child_watcher(watcher)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            policy.set_child_watcher(previous)
