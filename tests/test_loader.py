"""Loading automations and skills: every mistake named by file, line and field, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main
from daemon.loader import Loader
from daemon.testing import Project


def problems(project: Project) -> list[str]:
    catalog = Loader(project.automations, project.skills).load()
    return [f"{p.path.name}:{p.line}: {p.field}: {p.message}" for p in catalog.problems]


def hello_skill(project: Project) -> None:
    project.skill(
        "hello",
        "print('hi')",
        inputs={
            "who": {"type": "string", "required": True},
            "times": {"type": "integer", "default": 1},
        },
    )


def test_valid_automation_loads(project: Project) -> None:
    hello_skill(project)
    project.automation(
        "greet",
        """\
        name: greet
        triggers:
          - {type: cron, expr: "0 9 * * 1-5", timezone: Europe/Berlin}
          - {type: interval, every: 15m}
        when: "event.source == 'schedule'"
        skill: hello
        inputs: {who: "{{ event.payload.automation }}", times: 2}
        policies: {timeout: 90s, misfire: skip, retries: {max: 2, backoff: 10s}}
        """,
    )
    catalog = Loader(project.automations, project.skills).load()
    assert catalog.problems == ()
    greet = catalog.automations["greet"]
    assert greet.policies.timeout.total_seconds() == 90
    assert greet.policies.misfire.policy == "skip"
    assert [k for k, _ in greet.schedule_triggers()] == ["cron-0", "interval-1"]


def test_every_kind_of_mistake_is_reported_with_its_line_at_once(project: Project) -> None:
    hello_skill(project)
    project.automation(
        "bad",
        """\
        name: bad
        triggers:
          - type: cron
            expr: "61 * * * *"
          - type: cron
            expr: "0 9 * * *"
            timezone: Mars/Olympus
          - type: webhok
          - type: interval
            every: 0s
        when: "event.payload.x =="
        skill: hello
        inputs:
          times: many
          color: red
        policies:
          timeout: soon
          misfire: sometimes
        surprise: true
        """,
    )
    found = problems(project)
    expected = [
        "bad.yaml:4: triggers.0.expr:",
        "bad.yaml:7: triggers.1.timezone: unknown time zone 'Mars/Olympus'",
        "bad.yaml:8: triggers.2: Input tag 'webhok'",
        "bad.yaml:10: triggers.3.every: interval must be at least 1s",
        "bad.yaml:11: when:",
        "bad.yaml:17: policies.timeout: invalid duration 'soon'",
        "bad.yaml:18: policies.misfire.policy:",
        "bad.yaml:19: surprise: unknown field 'surprise'",
        "bad.yaml:14: inputs.times: Input should be a valid integer",
        "bad.yaml:15: inputs.color: skill 'hello' has no input 'color'",
        "bad.yaml:14: inputs.who: required input of skill 'hello' is missing",
    ]
    for prefix in expected:
        assert any(f.startswith(prefix) for f in found), (prefix, found)
    assert len(found) == len(expected)


def test_every_bad_field_of_a_cron_expression_is_named_at_once(project: Project) -> None:
    hello_skill(project)
    project.automation(
        "bad",
        """\
        name: bad
        skill: hello
        inputs: {who: world}
        triggers:
          - type: cron
            expr: "61 25 * * funday"
        """,
    )
    (found,) = problems(project)
    assert found == (
        "bad.yaml:6: triggers.0.expr: minute '61': the last value (61) is higher than the "
        "maximum value (59); hour '25': the last value (25) is higher than the maximum value "
        "(23); weekday 'funday': 'funday' is not a day of the week (0-7 or sun-sat)"
    )


def test_a_template_error_names_its_own_line_and_field(project: Project) -> None:
    hello_skill(project)
    project.automation(
        "bad",
        """\
        name: bad
        skill: hello
        when:
          - "event.source == 'github'"
          - "event.payload.x =="
        inputs:
          who: "{{ event.payload.user }}"
          times: |
            {% if event.payload.many %}
              3
            {% else %
              1
            {% endif %}
        """,
    )
    found = problems(project)
    assert [f.split(": ")[0] + ": " + f.split(": ")[1] for f in found] == [
        "bad.yaml:5: when.1",
        "bad.yaml:11: inputs.times",
    ], found
    assert "expression error: " in found[0] and "template error: " in found[1]


def test_a_codex_deny_prefix_that_cannot_be_split_is_named(project: Project) -> None:
    hello_skill(project)
    project.automation(
        "codex",
        """\
        name: codex
        skill: hello
        inputs: {who: x}
        agent:
          backend: codex
          deny_commands:
            - git push
            - "echo 'unclosed"
            - "  "
        """,
    )
    found = problems(project)
    assert any(f.startswith("codex.yaml:7: agent.deny_commands:") for f in found), found
    assert any("No closing quotation" in f for f in found), found
    assert len(found) == 1


def test_yaml_syntax_error_names_the_line(project: Project) -> None:
    hello_skill(project)
    project.automation("broken", "name: broken\nskill: hello\ninputs: {who: [unclosed\n")
    (found,) = problems(project)
    assert found.startswith("broken.yaml:4: : invalid YAML") or found.startswith("broken.yaml:3")


def test_missing_skill_and_duplicate_name(project: Project) -> None:
    hello_skill(project)
    project.automation("a", "name: same\nskill: hello\ninputs: {who: x}\n")
    project.automation("b", "name: same\nskill: hello\ninputs: {who: y}\n")
    project.automation("c", "name: c\n\nskill: nowhere\n")
    found = problems(project)
    assert "b.yaml:1: name: automation 'same' is already defined in" in found[0] or any(
        "b.yaml:1: name: automation 'same' is already defined" in f for f in found
    )
    assert any(
        f.startswith("c.yaml:3: skill: no skill named 'nowhere' (skills: hello)") for f in found
    )


def test_skill_front_matter_follows_the_agent_skills_spec(project: Project) -> None:
    folder = project.skills / "Bad_Name"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: Bad_Name\nversion: 2\n---\nbody\n")
    other = project.skills / "mismatch"
    other.mkdir()
    (other / "SKILL.md").write_text("---\nname: other\ndescription: x\n---\nbody\n")
    (other / "nightshift.yaml").write_text(
        "entrypoint: scripts/missing.py\ninputs: {a: {type: text}}\n"
    )
    found = problems(project)
    assert any(f.startswith("SKILL.md:2: name: String should match pattern") for f in found)
    assert any(f.startswith("SKILL.md:2: description: Field required") for f in found)
    assert any(f.startswith("SKILL.md:3: version: unknown field 'version'") for f in found)
    assert any(
        f.startswith("SKILL.md:2: name: 'other' must match the folder 'mismatch'") for f in found
    )
    assert any(f.startswith("nightshift.yaml:2: inputs.a.type: Input should be") for f in found)


def test_bundled_automations_and_skills_validate() -> None:
    root = Path(__file__).resolve().parents[1]
    catalog = Loader(root / "automations", root / "skills").load()
    assert catalog.problems == ()
    assert "repo-health" in catalog.automations


def test_validate_command_exits_nonzero_and_lists_problems(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hello_skill(project)
    good = project.automation("good", "name: good\nskill: hello\ninputs: {who: x}\n")
    bad = project.automation("bad", "name: bad\nskill: hello\ninputs: {who: 1, extra: 2}\n")
    monkeypatch.chdir(project.root)
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 1
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "automations/bad.yaml:3: inputs.extra: skill 'hello' has no input 'extra'" in err
    assert "automations/bad.yaml:3: inputs.who: Input should be a valid string" in err
    assert "2 problem(s) found" in err


def test_schema_command_writes_json_schema(tmp_path: Path) -> None:
    import json

    assert main(["schema", "--out", str(tmp_path)]) == 0
    schema = json.loads((tmp_path / "automation.schema.json").read_text())
    assert schema["properties"]["triggers"]["items"]["discriminator"]["propertyName"] == "type"
    committed = Path(__file__).resolve().parents[1] / "schema" / "automation.schema.json"
    assert committed.read_text() == (tmp_path / "automation.schema.json").read_text(), (
        "schema/ is stale: run `make schema`"
    )


def test_the_readme_automation_example_is_valid(project: Project) -> None:
    import re
    import shutil

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    example = re.search(r"```yaml\n(# automations/deps.yaml.*?)```", readme, re.S)
    assert example is not None
    shutil.copytree(root / "skills" / "repo-health", project.skills / "repo-health")
    project.automation("deps", example.group(1))
    catalog = Loader(project.automations, project.skills).load()
    assert catalog.problems == ()
    assert [t.type for t in catalog.automations["deps"].triggers] == [
        "cron",
        "interval",
        "date",
        "manual",
    ]
