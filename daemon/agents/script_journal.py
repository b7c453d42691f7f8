"""A script's journal: what it printed and how it exited, kept where the daemon's death
cannot take it.

A script's output reaches the daemon through a pipe; if the daemon is killed, a script that
goes on and finishes would have reported its outcome to nobody, and the restarted daemon
would run it again in full. So the script runs under a small `bash` wrapper that copies its
stdout and stderr into the run's journal folder with `tee -p` (which keeps writing the file
when the daemon's end of the pipe is gone, where a plain pipe would kill the script with
SIGPIPE) and writes the script's exit code there once it exits. The restarted daemon reads
the journal of a run it finds unfinished (`recorded`): an exit code there means the script
finished, and the run ends as the script said, not interrupted.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..runs import Artifact, Finished, RunEvent, RunStatus
from .script_lines import MAX_LINE, DelegateRequest, TooLong, parse_line

OUT, ERR, EXIT = "stdout.jsonl", "stderr.log", "exit"
# What of the output is read back for the outcome: a runaway script's journal can be
# hundreds of MB, and its `finished` and artifacts come at its end.
TAIL = 4 * 1024 * 1024

# $0 is the journal folder; the script's own exit code is written (then renamed, so a reader
# never sees half of it) before the wrapper ends as the script did: by the same signal when
# a signal ended it, so the daemon reads "killed by signal N" as without the wrapper.
_WRAPPER = r"""
exec > >(exec tee -p -a "$0/stdout.jsonl") 2> >(exec tee -p -a "$0/stderr.log" >&2)
"$@"
code=$?
echo "$code" > "$0/exit.part" && mv "$0/exit.part" "$0/exit"
if [ "$code" -gt 128 ]; then trap - "$((code - 128))"; kill -s "$((code - 128))" $$; fi
exit "$code"
"""


def wrap(command: list[str], journal: Path) -> list[str]:
    """`command` run so that its output and exit code land in `journal` too."""
    return ["/bin/bash", "-c", _WRAPPER, str(journal), *command]


@dataclass
class Recorded:
    """What a journal says a script reported: its outcome, and the artifacts it produced."""

    finished: Finished
    code: int
    lines: int
    artifacts: list[Artifact] = field(default_factory=list)


def recorded(journal: Path, max_line: int = MAX_LINE) -> Recorded | None:
    """The outcome a script recorded in `journal`, or None when it did not finish (no exit
    code: it is still running, was killed with its daemon, or never had a journal)."""
    try:
        code = int((journal / EXIT).read_text().strip())
        count, ending = _tail(journal / OUT)
    except (OSError, ValueError):
        return None
    finished: Finished | None = None
    artifacts: list[Artifact] = []
    for raw in ending.splitlines():
        line: bytes | TooLong = TooLong(len(raw)) if len(raw) > max_line else raw
        event: RunEvent | DelegateRequest | None = parse_line(line, max_line)
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, Artifact):
            artifacts.append(event)
    if code != 0:
        tail = ""
        with contextlib.suppress(OSError):
            tail = (journal / ERR).read_text(errors="replace")[-1000:].strip()
        why = f"killed by signal {code - 128}" if code > 128 else f"exited with code {code}"
        outcome = Finished(
            status=RunStatus.FAILED, summary=f"script {why}" + (f": {tail}" if tail else "")
        )
    elif finished is not None:
        good = finished.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
        outcome = Finished(
            status=finished.status if good else RunStatus.FAILED, summary=finished.summary
        )
    else:
        outcome = Finished(status=RunStatus.SUCCEEDED, summary="script exited with code 0")
    return Recorded(outcome, code, count, artifacts)


def _tail(path: Path) -> tuple[int, bytes]:
    """(how many lines `path` holds, its last whole lines within `TAIL` bytes), read in
    chunks so a huge journal costs no more memory than its tail."""
    lines, size = 0, 0
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            lines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk
        if size and not last.endswith(b"\n"):
            lines += 1  # a last line without its newline
        f.seek(max(size - TAIL, 0))
        tail = f.read()
    if size > TAIL:
        tail = tail.partition(b"\n")[2]  # the first line read may be a part of one
    return lines, tail


def discard_journal(journal: Path) -> None:
    """Remove a run's journal (its run has ended and been recorded)."""
    shutil.rmtree(journal, ignore_errors=True)
