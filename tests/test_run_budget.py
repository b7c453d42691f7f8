"""What one run may store: progress past the budget is counted and summarised, never lost
silently and never allowed to fill the database."""

from __future__ import annotations

from daemon.executor import MAX_EVENTS, LogBudget
from daemon.runs import RunStatus
from daemon.runs.events import ApprovalRequest, Command, Message, Step
from daemon.testing import Project, running_daemon

from .helpers import events, wait_status

NOISY = """\
import json, sys
sys.stdin.readline()
out = sys.stdout
for i in range(12_000):
    out.write(f"noise line {i} that is not JSON\\n")
out.write(json.dumps({"type": "finished", "status": "succeeded", "summary": "done"}) + "\\n")
"""


def test_the_budget_counts_past_its_limit_and_passes_what_steers_the_run() -> None:
    budget = LogBudget(max_events=3, max_bytes=1_000)
    kept = [budget.admit(Message(text=f"m{i}")) for i in range(3)]
    assert all(k is not None for k in kept) and not budget.full
    notice = budget.admit(Step(title="fourth"))
    assert isinstance(notice, Message) and "log is full" in notice.text
    assert budget.admit(Command(command="ls", output_tail="x" * 50)) is None
    approval = ApprovalRequest(id="a1", action="git push", description="push")
    assert budget.admit(approval) is approval  # control flow is never dropped
    summary = budget.summary()
    assert summary is not None and summary.text == (
        "not stored: 2 events (58 bytes of text): 1 step, 1 command"
    )


def test_bytes_bound_the_budget_too() -> None:
    budget = LogBudget(max_events=100, max_bytes=10)
    assert budget.admit(Message(text="12345")) is not None
    assert isinstance(budget.admit(Message(text="123456")), Message)  # the notice
    assert budget.full and budget.summary() is not None
    assert LogBudget().summary() is None


async def test_a_script_printing_noise_stores_a_bounded_log_and_says_what_it_left_out(
    project: Project,
) -> None:
    project.skill("noisy", NOISY)
    project.automation("noisy", skill="noisy")
    async with running_daemon(project.config()) as d:
        run = await d.dispatcher.manual("noisy", {}, "test")
        assert run.id is not None
        await wait_status(d, run.id, RunStatus.SUCCEEDED, timeout=120)
        log = await events(d, run.id)
    assert len(log) < MAX_EVENTS + 20
    texts = [e.get("text", "") for e in log]
    assert any("log is full" in t for t in texts)
    (summary,) = [t for t in texts if t.startswith("not stored:")]
    assert summary.startswith(f"not stored: {12_000 - MAX_EVENTS} events")
    assert log[-1]["type"] == "finished"
