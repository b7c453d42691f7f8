"""The executor's rules as plain functions: which queued runs start, and which ended runs
are run again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from daemon.executor.admission import Admission
from daemon.executor.retries import retry_verdict
from daemon.loader import Catalog
from daemon.runs import RunStatus
from daemon.spec import Automation
from daemon.store import RunRow

NOW = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def catalog(**max_instances: int) -> Catalog:
    automations = {
        name: Automation.model_validate(
            {"name": name, "skill": "s", "policies": {"concurrency": {"max_instances": n}}}
        )
        for name, n in max_instances.items()
    }
    return Catalog(MappingProxyType(automations), MappingProxyType({}), MappingProxyType({}), ())


def test_admission_honours_max_runs_max_instances_and_a_retrys_time() -> None:
    queue = Admission(max_runs=3)
    for run_id, name in [(5, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c")]:
        assert queue.add(run_id, name, NOW + timedelta(minutes=1) if run_id == 4 else None)
    assert not queue.add(1, "a", None)  # once
    assert queue.ids() == [1, 2, 3, 4, 5]  # oldest first
    taken, due = queue.admit(["b"], catalog(a=1, b=2, c=1), NOW)
    # A "b" holds one of the three slots: 1 (a) and 2 (b) take the other two.
    assert [q.run_id for q in taken] == [1, 2]
    assert due is None  # max_runs was reached before the delayed retry was looked at
    reasons = queue.reasons({10: "b", 11: "a", 12: "b"}, catalog(a=1, b=2, c=1), NOW)
    assert reasons == {
        3: "queued behind run 10, max_instances 2",
        4: "a retry, due at 09:01:00 UTC",
        5: "queued behind run 11, max_instances 1",
    }
    taken, due = queue.admit([], catalog(a=1, b=2, c=1), NOW)
    assert [q.run_id for q in taken] == [3, 5] and due == 60.0
    assert queue.remove(4) and not queue.remove(4) and queue.ids() == []


def chain(*statuses: str) -> list[RunRow]:
    return [
        RunRow(id=i, automation="a", trigger="manual", status=s) for i, s in enumerate(statuses)
    ]


def test_failures_and_interruptions_are_separate_budgets() -> None:
    policies = Automation.model_validate(
        {"name": "a", "skill": "s", "policies": {"retries": {"max": 1, "interrupted": 1}}}
    ).policies
    assert retry_verdict(chain("failed"), policies, RunStatus.FAILED).delay == timedelta(seconds=30)
    assert retry_verdict(chain("failed", "failed"), policies, RunStatus.FAILED).delay is None
    # An interruption after a failure still has its own retry, at once.
    again = retry_verdict(chain("failed", "interrupted"), policies, RunStatus.INTERRUPTED)
    assert again.delay == timedelta(0)
    done = retry_verdict(chain("interrupted", "interrupted"), policies, RunStatus.INTERRUPTED)
    assert done.delay is None
    assert done.why == "not run again: interrupted 2 times (retries.interrupted: 1)"
    assert retry_verdict(chain("succeeded"), policies, RunStatus.SUCCEEDED).delay is None
    never = Automation.model_validate(
        {"name": "a", "skill": "s", "policies": {"on_interrupt": "fail"}}
    ).policies
    assert retry_verdict(chain("interrupted"), never, RunStatus.INTERRUPTED).delay is None
