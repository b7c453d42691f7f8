"""What a new user tripped on, through the real `nightshift` command and daemon process."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest

from daemon.testing import Project, wait_for_sync

from .test_daemon_process import DaemonProcess

CHATTY = """\
import json, sys
ctx = json.loads(sys.stdin.readline())
for i in range(int(ctx["inputs"].get("steps", "1"))):
    print(json.dumps({"type": "step", "title": f"step {i} " + "x" * 60}), flush=True)
print(json.dumps({"type": "finished", "status": "succeeded",
                  "summary": "version " + ctx["inputs"]["version"]}), flush=True)
"""


@pytest.fixture
def chatty(project: Project) -> Iterator[DaemonProcess]:
    project.skill(
        "chatty",
        CHATTY,
        inputs={"version": {"type": "string", "default": "1"}, "steps": {"type": "integer"}},
    )
    project.automation("chatty", skill="chatty")
    config = project.write_config(
        shutdown_grace="1s", database_url=f"sqlite:///{project.root}/db/custom.db"
    )
    proc = DaemonProcess(project, config)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop(signal.SIGKILL)


def test_string_inputs_keep_their_text_and_the_database_is_owner_only(
    chatty: DaemonProcess, project: Project
) -> None:
    chatty.start()
    out = chatty.cli("trigger", "chatty", "-i", "version=3.10", "-i", "steps=2", "--wait")
    assert out.returncode == 0, out.stderr
    assert "succeeded: version 3.10" in out.stdout
    db = project.root / "db" / "custom.db"
    for path in (db, db.with_name("custom.db-wal")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_steering_a_run_that_does_not_exist_says_so(chatty: DaemonProcess) -> None:
    chatty.start()
    out = chatty.cli("steer", "99", "hello")
    assert out.returncode == 1 and out.stderr.strip() == "nightshift: run 99 not found"


def test_output_piped_into_head_ends_quietly(chatty: DaemonProcess, project: Project) -> None:
    chatty.start()
    out = chatty.cli("trigger", "chatty", "-i", "steps=3000", "--wait")
    assert out.returncode == 0, out.stderr
    shown = subprocess.run(  # noqa: S602 - the shell's pipe is the point
        f"{sys.executable} -m daemon --config {chatty.config} show 1 | head -2",
        shell=True,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(shown.stdout.splitlines()) == 2
    assert "Traceback" not in shown.stderr and "BrokenPipe" not in shown.stderr, shown.stderr


def test_a_daemon_whose_stdout_closes_keeps_running_runs_and_stops_cleanly(
    chatty: DaemonProcess, project: Project
) -> None:
    log = project.root / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "--config", str(chatty.config), "run"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    assert proc.stdout is not None
    proc.stdout.close()  # like `nightshift run | tee x` with tee gone
    chatty.proc = proc
    socket = project.root / ".nightshift" / "control.sock"
    wait_for_sync(socket.exists, 20)
    wait_for_sync(lambda: chatty.cli("runs").returncode == 0, 20)
    out = chatty.cli("trigger", "chatty", "-i", "steps=5", "--wait")
    assert out.returncode == 0 and "succeeded" in out.stdout, (out, log.read_text())
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 0, log.read_text()
    assert all(r["status"] == "succeeded" for r in chatty.runs())
    assert "console output closed" in log.read_text()


def test_list_shows_an_automation_whose_file_broke_as_its_last_good_version(
    chatty: DaemonProcess, project: Project
) -> None:
    chatty.start()
    path = project.automations / "chatty.yaml"
    path.write_text(path.read_text() + "surprise: true\n")
    wait_for_sync(lambda: "surprise" in json.dumps(chatty_status(chatty)), 20)
    out = chatty.cli("list")
    assert out.returncode == 0, out.stderr
    (row,) = [line for line in out.stdout.splitlines() if line.startswith("chatty")]
    assert "yes (last good; file has problems)" in row and row.split()[-1] == "chatty"
    assert "unknown field 'surprise'" in out.stderr


def chatty_status(chatty: DaemonProcess) -> dict[str, object]:
    from daemon.control import ControlClient

    with ControlClient(chatty.project.root / ".nightshift" / "control.sock") as client:
        return client.status()  # type: ignore[no-any-return]


def test_pause_and_resume_each_say_what_they_do() -> None:
    texts = {
        verb: subprocess.run(
            [sys.executable, "-m", "daemon", verb, "--help"], capture_output=True, text=True
        ).stdout
        for verb in ("pause", "resume")
    }
    assert "until `resume`" in texts["pause"] and "continue where they stopped" in texts["resume"]


def test_a_disabled_or_placeholder_automation_is_refused_unless_forced(
    chatty: DaemonProcess, project: Project
) -> None:
    project.automation("off", skill="chatty", enabled=False)
    project.automation("example", skill="chatty", workspace={"repository": "your-org/your-repo"})
    chatty.start()
    off = chatty.cli("trigger", "off")
    assert off.returncode == 1
    assert off.stderr.strip() == (
        "nightshift: automation 'off' is disabled (enabled: false); trigger it anyway with --force"
    )
    example = chatty.cli("trigger", "example")
    assert example.returncode == 1
    assert "placeholder 'your-org/your-repo' (workspace.repository)" in example.stderr
    assert chatty.runs() == []
    forced = chatty.cli("trigger", "off", "--force", "-i", "steps=1", "--wait")
    assert forced.returncode == 0 and "succeeded" in forced.stdout, forced


def test_an_approval_without_a_description_leaves_no_dangling_colon() -> None:
    from datetime import UTC, datetime

    from daemon.reporters import format_event
    from daemon.runs import Envelope
    from daemon.runs.events import ApprovalRequest
    from daemon.slack.blocks import reply

    bare = ApprovalRequest(id="a1", action="git push", description="")
    line = format_event(Envelope(run_id=3, seq=1, at=datetime.now(UTC), event=bare))
    assert line.endswith("needed for git push (nightshift approve 3 / deny 3)")
    posted = reply(3, bare)
    assert posted is not None and posted["text"].endswith("*Approval needed* for `git push`")


async def test_a_trigger_missing_a_token_it_needs_is_refused_at_once(project: Project) -> None:
    from daemon.errors import NightshiftError
    from daemon.testing import running_daemon

    project.skill("gh", "print()", permissions={"github": True})
    project.skill("plain", "print()")
    project.automation("triage", skill="gh")
    project.automation(
        "deploy", skill="plain", env={"DEPLOY_TOKEN": "${NIGHTSHIFT_TEST_NEVER_SET}"}
    )
    async with running_daemon(project.config()) as d:
        with pytest.raises(NightshiftError) as no_token:
            await d.dispatcher.manual("triage", {}, "test")
        assert str(no_token.value) == (
            "automation 'triage' cannot start: skill 'gh' uses GitHub (permissions.github) and "
            "the config sets no github.token; trigger it anyway with --force"
        )
        with pytest.raises(NightshiftError, match="NIGHTSHIFT_TEST_NEVER_SET"):
            await d.dispatcher.manual("deploy", {}, "test")
        assert d.store.list_runs() == []
        forced = await d.dispatcher.manual("deploy", {}, "test", force=True)
        assert forced.id is not None  # forced: it runs, and its start says what is missing
