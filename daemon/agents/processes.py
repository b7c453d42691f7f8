"""Finding agent processes a crashed daemon left behind.

Every agent process gets `NIGHTSHIFT_WORKDIR=<state>/runs/<id>` in its environment (and its
children inherit it), so after a crash the restarted daemon can find and stop exactly the
processes of the runs it marks interrupted. Linux (/proc) only; elsewhere it finds nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

MARKER = "NIGHTSHIFT_WORKDIR"


def orphans_of(workdir: Path) -> list[int]:
    """PIDs of live processes whose environment marks them as belonging to `workdir`."""
    needle = f"{MARKER}={workdir}".encode()
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
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_orphans(workdir: Path) -> list[int]:
    """SIGKILL every process left behind by the run working in `workdir`; return their PIDs."""
    pids = orphans_of(workdir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids
