"""The real `nightshift` daemon process: crash recovery after kill -9, SIGTERM, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.control import ControlClient
from daemon.errors import ControlError
from daemon.testing import Project, wait_for_sync

from .helpers import alive, git

# First attempt: leaves a marker and hangs (with a child process); later attempts succeed.
SLEEPY = """\
import json, pathlib, subprocess, sys, threading
ctx = json.loads(sys.stdin.readline())
marker = pathlib.Path(ctx["inputs"]["marker"])
if ctx["run"]["attempt"] == 1 and not marker.exists():
    child = subprocess.Popen(["sleep", "300"])
    pathlib.Path("half-done.txt").write_text("attempt 1 got this far")  # in its folder
    print(json.dumps({"type": "step", "title": "working on attempt 1"}), flush=True)
    marker.write_text(str(child.pid))
    threading.Event().wait()  # hang until killed
print(json.dumps({"type": "step", "title": f"attempt {ctx['run']['attempt']}"}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "all done"}), flush=True)
"""


class DaemonProcess:
    def __init__(self, project: Project, config: Path) -> None:
        self.project, self.config = project, config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = project.root / "daemon.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "--config", str(self.config), "run"],
                cwd=self.project.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        socket = self.project.root / ".nightshift" / "control.sock"

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                with ControlClient(socket, timeout=1) as c:
                    c.status()
                return True
            except ControlError:
                return False

        wait_for_sync(up, 20)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", "--config", str(self.config), *args],
            cwd=self.project.root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def runs(self) -> list[dict[str, Any]]:
        out = self.cli("runs", "--json")
        assert out.returncode == 0, out.stderr
        return sorted(json.loads(out.stdout), key=lambda r: r["id"])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(30)


@pytest.fixture
def daemon_proc(project: Project) -> Iterator[DaemonProcess]:
    project.skill("sleepy", SLEEPY, inputs={"marker": {"type": "string", "required": True}})
    project.automation("sleepy", skill="sleepy", inputs={"marker": str(project.root / "marker")})
    config = project.write_config(shutdown_grace="1s")
    proc = DaemonProcess(project, config)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop(signal.SIGKILL)


@pytest.mark.parametrize("isolated", [False, True], ids=["plain folder", "worktree"])
def test_kill_9_mid_run_then_restart_reconciles_the_run(
    daemon_proc: DaemonProcess, project: Project, repo: Path, isolated: bool
) -> None:
    if isolated:  # the run's processes work in its worktree, not in <state>/runs/<id>
        project.automation(
            "sleepy",
            skill="sleepy",
            inputs={"marker": str(project.root / "marker")},
            workspace={"repository": str(repo), "isolate": True},
        )
    daemon_proc.start()
    out = daemon_proc.cli("trigger", "sleepy")
    assert out.returncode == 0 and out.stdout.strip() == "run 1 queued for sleepy", out
    marker = project.root / "marker"
    wait_for_sync(marker.exists)
    orphan = int(wait_for_sync(marker.read_text))
    assert daemon_proc.stop(signal.SIGKILL) == -signal.SIGKILL
    assert daemon_proc.runs()[0]["status"] == "running"  # what the crash left behind
    assert alive(orphan)

    daemon_proc.start()
    runs = wait_for_sync(lambda: (r := daemon_proc.runs()) and r[-1]["status"] == "succeeded" and r)
    assert [(r["id"], r["status"], r["attempt"], r["retry_of"]) for r in runs] == [
        (1, "interrupted", 1, None),
        (2, "succeeded", 2, 1),
    ]
    wait_for_sync(lambda: not alive(orphan), 5)
    shown = daemon_proc.cli("show", "1")
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert any("→ working on attempt 1" in line for line in lines)  # the step log survived
    assert "⚡ interrupted: the daemon stopped during the run" in lines[-2]
    assert "retrying as run 2 (now)" in lines[-1]
    if isolated:  # what attempt 1 changed is kept, committed on its branch, and named
        said = "what it changed is committed on branch nightshift/sleepy/1"
        assert any(said in line for line in lines), lines
        kept = git(repo, "show", "--stat", "--format=%s", "nightshift/sleepy/1")
        assert kept.splitlines()[0] == "nightshift: run 1 (interrupted)"
        assert "half-done.txt" in kept
    assert daemon_proc.stop() == 0


# Works on after its daemon is gone: waits for a go file, then reports and finishes.
OUTLIVES = """\
import json, pathlib, sys, time
ctx = json.loads(sys.stdin.readline())
root = pathlib.Path(ctx["inputs"]["marker"]).parent
print(json.dumps({"type": "step", "title": "before the crash"}), flush=True)
(root / "waiting").touch()
while not (root / "go").exists():
    time.sleep(0.02)
pathlib.Path(ctx["workdir"], "result.txt").write_text("made after the crash\\n")
print("a log line on stderr", file=sys.stderr, flush=True)
print(json.dumps({"type": "artifact", "kind": "link", "title": "the report", "url": "https://example.invalid/r"}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded", "summary": "finished alone"}), flush=True)
"""


@pytest.mark.parametrize("isolated", [False, True], ids=["plain folder", "worktree"])
def test_a_script_that_finished_while_the_daemon_was_down_is_recorded_not_run_again(
    project: Project, repo: Path, isolated: bool
) -> None:
    project.skill("outlives", OUTLIVES, inputs={"marker": {"type": "string", "required": True}})
    project.automation(
        "outlives",
        skill="outlives",
        inputs={"marker": str(project.root / "marker")},
        **({"workspace": {"repository": str(repo), "isolate": True}} if isolated else {}),
    )
    daemon = DaemonProcess(project, project.write_config())
    daemon.start()
    try:
        assert daemon.cli("trigger", "outlives").returncode == 0
        wait_for_sync((project.root / "waiting").exists)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        (project.root / "go").touch()
        journal = project.root / ".nightshift" / "journals" / "1"
        wait_for_sync((journal / "exit").exists)  # the script finished with no daemon

        daemon.start()
        runs = wait_for_sync(lambda: (r := daemon.runs()) and r[0]["status"] != "running" and r)
        assert [(r["id"], r["status"], r["summary"]) for r in runs] == [
            (1, "succeeded", "finished alone")
        ]
        shown = daemon.cli("show", "1").stdout
        assert "the script went on and finished (exit code 0, 3 lines of output)" in shown
        assert "the report" in shown
        assert not journal.exists()
        if isolated:
            subject = subprocess.run(
                ["git", "log", "-1", "--format=%s", "nightshift/outlives/1"],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert subject == "nightshift: run 1"
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)


def test_cli_trigger_wait_steer_and_show(daemon_proc: DaemonProcess, project: Project) -> None:
    (project.root / "marker").write_text("skip the hang")
    daemon_proc.start()
    out = daemon_proc.cli("trigger", "sleepy", "--wait")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "run 1 queued for sleepy" in text
    assert "▶ sleepy started (manual, attempt 1)" in text
    assert "✔ succeeded: all done" in text

    listed = daemon_proc.cli("runs", "--status", "succeeded")
    assert listed.stdout.splitlines()[1].split()[:3] == ["1", "sleepy", "succeeded"]
    shown = daemon_proc.cli("show", "1")
    assert "run 1  sleepy  succeeded" in shown.stdout and "→ attempt 1" in shown.stdout

    refused = daemon_proc.cli("steer", "1", "too late")
    assert refused.returncode == 1
    assert refused.stderr.strip() == "nightshift: run 1 is not running"
    unknown = daemon_proc.cli("trigger", "nope")
    assert unknown.stderr.strip() == "nightshift: automation 'nope' not found"

    listing = daemon_proc.cli("list")
    assert listing.stdout.splitlines()[1].split()[:3] == ["sleepy", "yes", "manual"]
    # The console reporter showed the run live in the daemon's own terminal.
    assert "▶ sleepy started" in daemon_proc.log.read_text()


def test_sigterm_gives_runs_grace_then_records_them_interrupted(
    daemon_proc: DaemonProcess, project: Project
) -> None:
    daemon_proc.start()
    daemon_proc.cli("trigger", "sleepy")
    wait_for_sync((project.root / "marker").exists)
    orphan = int(wait_for_sync((project.root / "marker").read_text))
    assert daemon_proc.stop(signal.SIGTERM) == 0
    runs = daemon_proc.runs()
    assert [(r["status"], r["summary"]) for r in runs] == [
        ("interrupted", "the daemon was stopped"),
        ("queued", ""),  # the retry waits for the next start
    ]
    assert not alive(orphan)
    daemon_proc.start()
    wait_for_sync(lambda: daemon_proc.runs()[-1]["status"] == "succeeded")


def test_cli_without_daemon_says_so(project: Project) -> None:
    proc = DaemonProcess(project, project.write_config())
    out = proc.cli("trigger", "anything")
    assert out.returncode == 1
    assert out.stderr.startswith("nightshift: the daemon is not running")


def test_a_huge_journal_is_read_by_its_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.agents import script_journal

    monkeypatch.setattr(script_journal, "TAIL", 4096)
    (tmp_path / "exit").write_text("0\n")
    artifact = {"type": "artifact", "kind": "link", "title": "t", "url": "https://x.invalid"}
    with (tmp_path / "stdout.jsonl").open("wb") as out:
        for i in range(5000):
            out.write(b"noise that is not an event %d\n" % i)
        out.write(json.dumps(artifact).encode() + b"\n")
        out.write(b'{"type": "finished", "status": "succeeded", "summary": "ok"}')  # no newline
    said = script_journal.recorded(tmp_path)
    assert said is not None
    assert (said.lines, said.finished.summary, [a.title for a in said.artifacts]) == (
        5002,
        "ok",
        ["t"],
    )
