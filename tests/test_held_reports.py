"""The built-in loop's held reports: what is held comes out once, in order, and nothing that
needs a person or ends the run waits behind it."""

from __future__ import annotations

from daemon.agents.held_reports import HeldReports
from daemon.runs import ApprovalRequest, Finished, Message, RunEvent, RunStatus


def reports() -> tuple[HeldReports, list[str]]:
    seen: list[str] = []

    def report(event: RunEvent) -> None:
        seen.append(event.text if isinstance(event, Message) else event.type)

    return HeldReports(report), seen


def test_events_pass_at_once_unless_held() -> None:
    held, seen = reports()
    held.put(Message(text="a"))
    assert seen == ["a"] and not held.holding


def test_held_events_come_out_in_order_once_released() -> None:
    held, seen = reports()
    held.hold()
    held.put(Message(text="a"))
    held.put(Message(text="b"))
    assert seen == [] and held.holding
    held.release()
    held.release()  # a second release reports nothing again
    assert seen == ["a", "b"] and not held.holding
    held.put(Message(text="c"))
    assert seen == ["a", "b", "c"]


def test_an_approval_request_or_the_end_releases_what_is_held_before_it() -> None:
    for last in (
        ApprovalRequest(id="a1", action="push", description="push it"),
        Finished(status=RunStatus.SUCCEEDED, summary="done"),
    ):
        held, seen = reports()
        held.hold()
        held.put(Message(text="before"))
        held.put(last)
        held.put(Message(text="after"))  # nothing is held behind it
        assert seen == ["before", last.type, "after"]


def test_holding_twice_keeps_what_is_held() -> None:
    held, seen = reports()
    held.hold()
    held.put(Message(text="a"))
    held.hold()
    held.release()
    assert seen == ["a"]
