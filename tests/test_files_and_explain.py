"""File triggers on a real folder; `nightshift test` (dry run) and `nightshift explain`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.testing import Project, running_daemon, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "github"


async def test_file_changes_start_the_matching_automation(project: Project) -> None:
    project.skill("noop", "print()", inputs={"changed": {"type": "array", "default": []}})
    project.automation(
        "docs",
        skill="noop",
        triggers=[{"type": "file", "paths": ["docs/*.md"], "debounce": "100ms"}],
        inputs={"changed": "{{ event.payload.changes | map(attribute='path') | list }}"},
    )
    (project.root / "docs").mkdir()
    async with running_daemon(project.config()) as d:
        await wait_for(lambda: d.files.watching)
        (project.root / "notes.txt").write_text("not watched by any glob")
        (project.root / "docs" / "guide.md").write_text("# Guide")
        run = (await wait_for(lambda: d.store.list_runs(), 10))[0]
        assert run.automation == "docs"
        assert "docs/guide.md" in run.inputs["changed"]
        assert "notes.txt" not in run.inputs["changed"] or len(run.inputs["changed"]) == 2
        events = d.store.list_events()
        assert all(e.source == "file" for e in events)
        # A change the globs don't cover is stored and explained, but starts nothing.
        (project.root / "other.txt").write_text("x")
        later = await wait_for(
            lambda: [
                e
                for e in d.store.list_events()
                if any(c["path"] == "other.txt" for c in e.payload["changes"])
            ],
            10,
        )
        found = d.store.get_event(later[0].id or 0)
        assert found is not None
        assert found[1][0].decision == "filtered"
        assert found[1][0].detail == "no added/modified/deleted change matches ['docs/*.md']"
        assert len(d.store.list_runs()) == 1


def test_dry_run_shows_the_decision_and_rendered_inputs(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project.skill(
        "triage",
        "print()",
        inputs={
            "number": {"type": "integer", "required": True},
            "title": {"type": "string", "default": ""},
        },
    )
    project.automation(
        "triage",
        skill="triage",
        triggers=[{"type": "github", "events": ["issues"], "actions": ["opened"]}],
        inputs={
            "number": "{{ event.payload.issue.number }}",
            "title": "{{ event.payload.issue.title }}",
        },
    )
    monkeypatch.chdir(project.root)
    fixture = str(FIXTURES / "issues.opened.json")
    assert main(["test", "triage", "--event", fixture, "--github-event", "issues"]) == 0
    out = capsys.readouterr().out
    assert "decision: matched" in out
    assert "    number: 1\n" in out and '    title: "Spelling error in the README file"' in out
    closed = project.root / "closed.json"
    closed.write_text(json.dumps({**json.loads(Path(fixture).read_text()), "action": "closed"}))
    assert main(["test", "triage", "--event", str(closed), "--github-event", "issues"]) == 1
    assert "decision: filtered: action closed not in ['opened']" in capsys.readouterr().out
    assert not (project.root / ".nightshift").exists()  # nothing stored, nothing run


async def test_explain_says_why_per_automation(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project.skill("noop", "print()")
    project.automation("a", skill="noop", triggers=[{"type": "webhook", "source": "hook"}])
    project.automation(
        "b",
        skill="noop",
        triggers=[{"type": "webhook", "source": "hook"}],
        when="event.payload.env == 'prod'",
    )
    project.automation("c", skill="noop", triggers=[{"type": "webhook", "source": "other"}])
    config = project.config()
    async with running_daemon(config) as d:
        from daemon.sources.incoming import Incoming

        routed = await d.dispatcher.route(
            Incoming(
                "webhook",
                "hook",
                {"env": "dev"},
                meta={"webhook": {"name": "hook", "delivery": None}},
            )
        )
    monkeypatch.chdir(project.root)
    (project.root / "config.yaml").write_text("http: {port: 0}\n")
    assert main(["explain", str(routed.event_id)]) == 0
    out = capsys.readouterr().out
    assert f"  a: matched → run {routed.runs[0].id}" in out
    assert "  b: filtered (when: event.payload.env == 'prod')" in out
    assert "  c: filtered (source hook is not other)" in out
