"""Writing a script skill in Python: the script protocol (docs/script-protocol.md) as an API.

    from daemon.skillkit import SkillRun

    run = SkillRun.start()
    run.step("Reading the issue")
    answer = run.delegate("Pick labels for issue #12 …")      # None without a delegate agent
    if run.approve("label", "Add bug to #12").approved:
        ...
    run.finish("succeeded", "labelled #12")

A thread reads stdin, so steering and decisions are never lost while the script works; the
script takes steering when it is ready (`new_steering()`), and `approve`/`delegate` block until
their answer arrives. Events go to stdout as JSON lines; logging goes to stderr.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    import subprocess

# Environment names that carry credentials: kept from the repository's own code.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL", re.I)


# Named tuples, not dataclasses: `dataclasses` costs a script skill's start a third again.
class Decision(NamedTuple):
    """A person's answer to an approval request (a closed stdin counts as a deny)."""

    approved: bool
    reason: str | None = None


class Delegated(NamedTuple):
    """The delegate agent's outcome: `succeeded`, `failed`, or `unavailable` (none set)."""

    status: str
    summary: str

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


class Steering(NamedTuple):
    """A steering message as the script receives it."""

    text: str
    by: str
    to_agent: bool = False  # the delegate agent already took it


class SkillRun:
    """One run, seen from inside the script."""

    def __init__(self, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        first = self._in.readline()
        self.context: dict[str, Any] = json.loads(first) if first.strip() else {}
        self.inputs: dict[str, Any] = dict(self.context.get("inputs") or {})
        self.event: dict[str, Any] = dict(self.context.get("event") or {})
        self.payload: dict[str, Any] = dict(self.event.get("payload") or {})
        self.workdir = Path(self.context.get("workdir") or ".")
        self.run_id: int = int((self.context.get("run") or {}).get("id") or 0)
        self.steering: list[Steering] = []  # every message, in order
        self._taken = 0
        self._decisions: dict[str, Decision] = {}
        self._results: dict[str, Delegated] = {}
        self._closed = False
        self._warned_unsandboxed = False
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        threading.Thread(target=self._read, name="nightshift-stdin", daemon=True).start()

    @classmethod
    def start(cls) -> SkillRun:
        """The current run. stdout carries the protocol, so structured logging, where something
        the script imported uses it, is pointed at stderr (the kit itself does not load it:
        a script pays for what it imports)."""
        structlog = sys.modules.get("structlog")
        if structlog is not None:
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
        return cls()

    # -- stdin ----------------------------------------------------------------------------
    def _read(self) -> None:
        for line in self._in:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                kind = msg.get("type")
                if kind == "steer":
                    self.steering.append(
                        Steering(str(msg["text"]), str(msg.get("by", "")), msg.get("to") == "agent")
                    )
                elif kind == "approval_decision":
                    self._decisions[str(msg["id"])] = Decision(
                        bool(msg["approved"]), msg.get("reason")
                    )
                elif kind == "delegate_result":
                    self._results[str(msg["id"])] = Delegated(
                        str(msg["status"]), str(msg.get("summary") or "")
                    )
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def new_steering(self) -> list[str]:
        """Steering the script has not taken yet (messages the agent already took excluded)."""
        with self._cond:
            fresh = self.steering[self._taken :]
            self._taken = len(self.steering)
        return [s.text for s in fresh if not s.to_agent]

    # -- stdout ---------------------------------------------------------------------------
    def emit(self, **event: Any) -> None:
        with self._write_lock:
            self._out.write(json.dumps(event, default=str) + "\n")
            self._out.flush()

    def step(self, title: str, detail: str | None = None) -> None:
        self.emit(type="step", title=title, detail=detail)

    def message(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self.emit(type="message", text=text, level=level)

    def artifact(
        self,
        kind: Literal["diff", "link", "file", "report"],
        title: str,
        *,
        url: str | None = None,
        content: str | None = None,
    ) -> None:
        self.emit(type="artifact", kind=kind, title=title, url=url, content=content)

    def finish(self, status: Literal["succeeded", "failed"], summary: str) -> None:
        self.emit(type="finished", status=status, summary=summary)

    def sh(
        self,
        argv: list[str],
        *,
        cwd: Path | None = None,
        timeout: float = 900,
        quiet: bool = False,
        isolated: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command, report it as a `command` event (unless quiet), and return it.

        The GitHub token the daemon handed the run never reaches a command. With `isolated`
        (for the repository's own code: its tests) the command also runs in the sandbox —
        no network, writes only in `cwd` — with no variable that looks like a secret.
        """
        import shlex
        import subprocess  # here, not at the top: a script that runs no command never pays

        where = cwd or self.workdir
        # No .pyc: a fix of the same size in the same second must not run stale code.
        env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        shown, run_argv = " ".join(argv), argv
        if isolated:
            env = {k: v for k, v in env.items() if not _SECRET_NAME.search(k)}
            from .workspace import sandbox

            if sandbox.available() is not None:
                # This Python stays usable in there, also when it lives under /tmp.
                python = (Path(sys.prefix), Path(sys.base_prefix))
                run_argv = sandbox.wrap(shlex.join(argv), where, network=False, readable=python)
            elif not self._warned_unsandboxed:
                self._warned_unsandboxed = True
                self.message("no sandbox (bubblewrap) here: commands run without one", "warning")
        start = time.monotonic()
        try:
            proc = subprocess.run(
                run_argv,
                cwd=where,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else ""
            proc = subprocess.CompletedProcess(argv, 124, out, f"timed out after {timeout:.0f}s")
        except OSError as exc:
            proc = subprocess.CompletedProcess(argv, 127, "", str(exc))
        if not quiet:
            self.emit(
                type="command",
                command=shown,
                exit_code=proc.returncode,
                output_tail=(proc.stdout + proc.stderr)[-4000:],
                duration_s=round(time.monotonic() - start, 3),
            )
        return proc

    # -- questions ------------------------------------------------------------------------
    def approve(self, action: str, description: str, *, id: str | None = None) -> Decision:
        """Ask the thread before an elevated action; block until someone decides."""
        request_id = id or f"{action}-{next(self._ids)}"
        self.emit(type="approval_request", id=request_id, action=action, description=description)
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._decisions or self._closed)
            return self._decisions.get(request_id, Decision(False, "the daemon went away"))

    def delegate(self, task: str, *, id: str | None = None) -> Delegated:
        """Hand a judgement call to the automation's delegate agent; block for its outcome.

        Steering that arrived before the call is handed over with the task, so nothing a
        person said is lost between the script's steps and the agent's.
        """
        request_id = id or f"delegate-{next(self._ids)}"
        said = [f"- {s.text} ({s.by})" for s in self.steering if not s.to_agent]
        if said:
            task += "\n\nPeople in the thread have said (follow it):\n" + "\n".join(said)
        self.emit(type="delegate", id=request_id, task=task)
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._results or self._closed)
            return self._results.get(request_id, Delegated("failed", "the daemon went away"))


def find_test_command(workdir: Path, configured: str = "auto") -> list[str] | None:
    """The command that runs a project's tests: `configured` split, or found by looking
    (pytest for Python projects, `npm test` where package.json has a test script)."""
    if configured not in ("", "auto"):
        import shlex

        return None if configured == "none" else shlex.split(configured)
    python = any(
        (workdir / name).exists() for name in ("pytest.ini", "conftest.py", "tests", "setup.cfg")
    ) or any(workdir.glob("test_*.py"))
    pyproject = workdir / "pyproject.toml"
    if python or (pyproject.exists() and "pytest" in pyproject.read_text(errors="replace")):
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    package = workdir / "package.json"
    if package.exists():
        try:
            scripts = json.loads(package.read_text()).get("scripts") or {}
        except ValueError:
            scripts = {}
        if "test" in scripts:
            return ["npm", "test", "--silent"]
    return None


def json_in(text: str) -> Any:
    """The first JSON object or array in `text` (models wrap answers in prose or fences)."""
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text[index:])
            except json.JSONDecodeError:
                continue
            return value
    return None
