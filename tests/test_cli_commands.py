"""The commands users reach for beside `runs` and `show`: approvals, follow, diff, retry, the
`--json` of every read command, and what a queued or paused run says — through the real
`nightshift` command and a daemon process."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.cli import main
from daemon.control import ControlClient
from daemon.sources.replay import guess_github_event
from daemon.testing import Project, wait_for_sync

from .test_daemon_process import DaemonProcess

# Asks to push, then writes a file in its worktree: a run with an approval and a diff.
EDITING = """\
import json, pathlib, sys
ctx = json.loads(sys.stdin.readline())
print(json.dumps({"type": "approval_request", "id": "push-1", "action": "push",
                  "description": "push branch fix/notes"}), flush=True)
decision = json.loads(sys.stdin.readline())
pathlib.Path("NOTES.md").write_text("noted " + ctx["inputs"]["word"] + "\\n")
print(json.dumps({"type": "finished", "status": "succeeded",
                  "summary": "wrote " + ctx["inputs"]["word"]}), flush=True)
"""


@pytest.fixture
def editing(project: Project, repo: Path) -> Iterator[DaemonProcess]:
    project.skill("editor", EDITING, inputs={"word": {"type": "string"}})
    project.automation(
        "notes",
        skill="editor",
        workspace={"repository": str(repo), "isolate": True},
        policies={"concurrency": {"max_instances": 1}},
    )
    proc = DaemonProcess(project, project.write_config(shutdown_grace="1s"))
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop(signal.SIGKILL)


def as_json(out: Any) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_approvals_follow_diff_and_retry(editing: DaemonProcess) -> None:
    editing.start()
    assert editing.cli("trigger", "notes", "-i", "word=alpha").returncode == 0
    assert editing.cli("trigger", "notes", "-i", "word=beta").returncode == 0
    wait_for_sync(lambda: as_json(editing.cli("approvals", "--json")))

    # What waits for a person: run 1's request; run 2 says what holds it.
    (waiting,) = as_json(editing.cli("approvals", "--json"))
    assert (waiting["run_id"], waiting["request_id"], waiting["automation"]) == (
        1,
        "push-1",
        "notes",
    )
    table = editing.cli("approvals").stdout
    assert "push-1" in table and "push branch fix/notes" in table
    queued = as_json(editing.cli("show", "2", "--json"))
    assert queued["status"] == "queued"
    assert queued["waits_for"] == "queued behind run 1, max_instances 1"
    assert "waits for: queued behind run 1, max_instances 1" in editing.cli("show", "2").stdout
    assert editing.cli("diff", "1").returncode == 1  # still running: no diff yet

    assert editing.cli("approve", "1").returncode == 0
    followed = editing.cli("follow", "1")
    assert followed.returncode == 0, followed.stderr
    assert "approved" in followed.stdout and "wrote alpha" in followed.stdout
    lines = [json.loads(x) for x in editing.cli("follow", "1", "--json").stdout.splitlines()]
    assert lines[-1]["event"]["type"] == "finished" and [x["seq"] for x in lines] == sorted(
        x["seq"] for x in lines
    )

    diff = editing.cli("diff", "1")
    assert diff.returncode == 0 and "+noted alpha" in diff.stdout
    assert "nightshift/notes/1" in diff.stderr
    (only,) = as_json(editing.cli("diff", "1", "--json"))["diffs"]
    assert "+noted alpha" in only["diff"]

    # A retry is a new run of the same automation with the same inputs.
    wait_for_sync(lambda: as_json(editing.cli("approvals", "--json")))  # run 2 asks now
    assert editing.cli("approve", "2").returncode == 0
    wait_for_sync(lambda: as_json(editing.cli("show", "2", "--json"))["status"] == "succeeded")
    retried = editing.cli("retry", "1")
    assert retried.stdout.strip() == "run 3 queued: a retry of run 1", retried.stderr
    again = as_json(editing.cli("show", "3", "--json"))
    assert again["inputs"] == {"word": "alpha"} and again["automation"] == "notes"
    refused = editing.cli("retry", "3")  # not ended yet
    assert refused.returncode == 1 and "run 3 is still" in refused.stderr
    missing = editing.cli("retry", "99")
    assert missing.returncode == 1 and "run 99 not found" in missing.stderr
    shown = as_json(editing.cli("show", "1", "--json"))
    last = shown["events"][-1]["event"]["text"]
    assert last.startswith("retried by ") and last.endswith(" as run 3")


def test_a_paused_run_is_paused_not_waiting(editing: DaemonProcess, project: Project) -> None:
    project.skill(
        "sleeper",
        # Works until its input closes: it ends only when cancelled.
        "import json, sys\njson.loads(sys.stdin.readline())\nfor _ in sys.stdin:\n    pass\n",
    )
    project.automation("sleeper", skill="sleeper")
    editing.start()
    assert editing.cli("trigger", "sleeper").returncode == 0
    wait_for_sync(lambda: as_json(editing.cli("show", "1", "--json"))["status"] == "running")
    assert editing.cli("pause", "1").returncode == 0
    wait_for_sync(lambda: as_json(editing.cli("show", "1", "--json"))["status"] == "paused")
    assert as_json(editing.cli("approvals", "--json")) == []
    assert editing.cli("resume", "1").returncode == 0
    wait_for_sync(lambda: as_json(editing.cli("show", "1", "--json"))["status"] == "running")
    assert editing.cli("cancel", "1").returncode == 0


def test_every_read_command_speaks_json(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.skill("noop", 'print(\'{"type": "finished", "status": "succeeded"}\')\n')
    project.automation("noop", skill="noop", triggers=[{"type": "interval", "every": "1h"}])
    config = str(project.write_config())
    for argv in (
        ["list", "--json"],
        ["runs", "--json"],
        ["events", "--json"],
        ["approvals", "--json"],
        ["events", "--refused", "--json"],
        ["db", "status"],
    ):
        assert main(["--config", config, *argv]) == 0, argv
        out = capsys.readouterr().out
        if "--json" in argv:
            json.loads(out)
    assert main(["--config", config, "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["automations"]
    assert entry["name"] == "noop" and entry["triggers"] == ["every 1h"]
    assert entry["next_fire"] is not None and entry["last_good_version"] is False


ISSUE_OPENED = {
    "action": "opened",
    "issue": {"number": 7, "title": "crash on start", "labels": [], "user": {"login": "ann"}},
    "repository": {"full_name": "octo/app", "name": "app", "owner": {"login": "octo"}},
    "sender": {"login": "ann", "type": "User"},
}


def test_test_infers_the_github_event_and_judges_a_disabled_automation(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.skill("triage", "print('never run')\n", inputs={"title": {"type": "string"}})
    project.automation(
        "triage",
        skill="triage",
        enabled=False,
        triggers=[
            {
                "type": "github",
                "events": ["issues"],
                "actions": ["opened"],
                "author_associations": [],
            }
        ],
        inputs={"title": "{{ event.payload.issue.title }}"},
    )
    payload = tmp_path / "issue.json"
    payload.write_text(json.dumps(ISSUE_OPENED))
    config = str(project.write_config())
    code = main(["--config", config, "test", "triage", "-e", str(payload)])
    out = capsys.readouterr().out
    assert code == 1  # disabled: it would not run now
    assert "(--github-event issues, read from the payload's fields)" in out
    assert "triage is disabled (enabled: false); if it were enabled:" in out
    assert "decision: matched" in out and 'title: "crash on start"' in out
    assert main(["--config", config, "test", "triage", "-e", str(payload), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["enabled"] is False
    assert result["events"][0]["inputs"] == {"title": "crash on start"}


@pytest.mark.parametrize(
    ("fields", "event"),
    [
        ({"comment", "issue"}, "issue_comment"),
        ({"comment", "pull_request"}, "pull_request_review_comment"),
        ({"review", "pull_request"}, "pull_request_review"),
        ({"pull_request", "number"}, "pull_request"),
        ({"workflow_run", "workflow"}, "workflow_run"),
        ({"ref", "before", "after", "commits"}, "push"),
        ({"action", "repository"}, None),
    ],
)
def test_the_github_event_is_read_from_the_payloads_fields(
    fields: set[str], event: str | None
) -> None:
    assert guess_github_event({field: {} for field in fields}) == event


def test_a_duplicate_name_is_blamed_on_the_same_file_by_the_daemon_and_the_cli(
    project: Project,
) -> None:
    project.skill("noop", "print()")
    project.automation("second", "name: nightly\nskill: noop\n")
    daemon = DaemonProcess(project, project.write_config())
    daemon.start()
    try:
        # A copy that sorts first claims the name the running daemon already gives "second".
        project.automation("first", "name: nightly\nskill: noop\n")
        blamed = "first.yaml:1: name: automation 'nightly' is already defined in"

        def daemon_problems() -> list[str]:
            with ControlClient(project.root / ".nightshift" / "control.sock") as client:
                return list(client.status()["problems"])

        wait_for_sync(lambda: any(blamed in p for p in daemon_problems()))
        listed = as_json(daemon.cli("list", "--json"))
        assert [p for p in listed["problems"] if "already defined" in p] == [
            p for p in daemon_problems() if "already defined" in p
        ]
        assert any(blamed in p for p in listed["problems"])
        validated = daemon.cli("validate")
        assert blamed in validated.stderr
    finally:
        daemon.stop(signal.SIGKILL)
