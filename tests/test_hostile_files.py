"""Hostile files: whatever lands in automations/, skills/ or config.yaml is a reported problem,
never an exception — neither in `nightshift validate` nor in a running daemon."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.loader import Loader, parse_automation, parse_skill
from daemon.testing import Project, running_daemon, wait_for

GOOD = "name: nightly\ntriggers:\n  - {type: cron, expr: '0 2 * * *'}\nskill: noop\n"

# Each once stopped a running daemon and kept it from starting again.
HOSTILE = {
    "invalid-utf8": (
        b"name: nightly\nskill: noop\ndescription: \xff\xfe\n",
        "nightly.yaml:3: not UTF-8 text: byte 0xff at column 14",
    ),
    "huge-interval": (
        b"name: nightly\nskill: noop\ntriggers:\n  - type: interval\n"
        b"    every: 999999999999999999d\n",
        "nightly.yaml:5: triggers.0.every: duration '999999999999999999d' is too long",
    ),
    "huge-timezone": (
        b"name: nightly\nskill: noop\ntriggers:\n  - type: cron\n    expr: '@daily'\n"
        b"    timezone: " + b"x" * 100_000 + b"\n",
        "nightly.yaml:6: triggers.0.timezone: unknown time zone 'xxxx",
    ),
    "deep-when": (
        b"name: nightly\nskill: noop\nwhen: '" + b"(" * 3000 + b"1" + b")" * 3000 + b"'\n",
        "nightly.yaml:3: when: expression is nested too deeply",
    ),
    "control-character": (
        b"name: nightly\nskill: noop\ndescription: a\x12b\n",
        "nightly.yaml:3: invalid YAML: control characters are not allowed (#x0012 at column 15)",
    ),
    "deep-yaml": (
        b"name: nightly\nskill: noop\ninputs: " + b"[" * 3000 + b"]" * 3000 + b"\n",
        "nightly.yaml:3: invalid YAML:",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_automation_is_one_problem_and_the_last_good_version_stays(
    project: Project, case: str
) -> None:
    project.skill("noop", "print()")
    path = project.automation("nightly", GOOD)
    loader = Loader(project.automations, project.skills)
    assert loader.load().problems == ()

    text, expected = HOSTILE[case]
    path.write_bytes(text)
    catalog = loader.refresh({path})
    shown = [
        f"{p.path.name}:{p.line}: {p.field + ': ' if p.field else ''}{p.message}"
        for p in catalog.problems
    ]
    assert len(shown) == 1 and shown[0].startswith(expected), shown
    assert len(shown[0]) < 400  # one line a person can read, not the file echoed back
    assert catalog.automations["nightly"].triggers[0].expr == "0 2 * * *"  # type: ignore[union-attr]


async def test_a_running_daemon_survives_hostile_files_and_starts_with_them(
    project: Project,
) -> None:
    project.skill("noop", "print()")
    good = project.automation("nightly", GOOD)
    config = project.config()
    async with running_daemon(config) as d:
        for name, (text, _) in sorted(HOSTILE.items()):
            (project.automations / f"{name}.yaml").write_bytes(text)
        await wait_for(lambda: len(d.catalog().problems) == len(HOSTILE), timeout=20)
        assert f"nightshift_config_problems {len(HOSTILE)}.0".encode() in d.metrics.render()
        good.write_text(GOOD.replace("0 2", "0 3"))
        await wait_for(
            lambda: d.catalog().automations["nightly"].triggers[0].expr == "0 3 * * *"  # type: ignore[union-attr]
        )
        assert not d.stopping
    # and it starts again with the files still there
    async with running_daemon(config) as d:
        assert len(d.catalog().problems) == len(HOSTILE)
        assert "nightly" in d.catalog().automations


def test_config_problems_carry_lines_and_name_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "loging:\n  level: info\nhttp:\n  prot: 9\nsources:\n  webhooks:\n    x:\n"
        "      auth: hmac\n      secret: s\n      sigature_header: X-Sig\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path}:1: loging: unknown field 'loging' (did you mean 'logging'?)",
        f"{path}:4: http.prot: unknown field 'prot' (did you mean 'port'?)",
        f"{path}:10: sources.webhooks.x.sigature_header: unknown field 'sigature_header' "
        "(did you mean 'signature_header'?)",
    ]


@pytest.mark.parametrize(
    "text",
    [b"logging: " + b"[" * 3000 + b"]" * 3000 + b"\n", b"state_dir: \xff\n", b"- 1\n"],
)
def test_a_hostile_config_is_a_config_error(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:")


# -- property-based: random documents shaped like the real files ---------------------------

_KEYS = {
    "automation": [
        "name",
        "description",
        "enabled",
        "triggers",
        "when",
        "skill",
        "inputs",
        "agent",
        "workspace",
        "report",
        "policies",
        "env",
        "type",
        "expr",
        "timezone",
        "every",
        "at",
        "events",
        "matchers",
        "source",
        "paths",
        "backend",
        "timeout",
        "retries",
        "misfire",
        "throttle",
        "dedup_key",
        "max",
        "backoff",
        "start",
        "approval_ttl",
        "max_steps",
    ],
    "manifest": [
        "inputs",
        "permissions",
        "entrypoint",
        "type",
        "default",
        "enum",
        "required",
        "github",
        "network",
        "approval_required",
        "description",
    ],
    "config": [
        "state_dir",
        "database_url",
        "http",
        "port",
        "host",
        "sources",
        "github",
        "webhooks",
        "secret",
        "auth",
        "logging",
        "level",
        "format",
        "slack",
        "bot_token",
        "concurrency",
        "max_runs",
        "reload",
        "shutdown_grace",
    ],
}
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "cron",
            "interval",
            "date",
            "github",
            "webhook",
            "file",
            "alertmanager",
            "manual",
            "script",
            "builtin",
            "codex",
            "claude",
            "15m",
            "999999999999999999d",
            "-1s",
            "nan",
            "0 2 * * *",
            "61 * * * *",
            "@daily",
            "Europe/Berlin",
            "../../etc/passwd",
            "x" * 300,
            "{{ event.payload.x }}",
            "{{ (((((1))))) }}",
            "{% for %}",
            "${UNSET_VAR}",
            "${file:/nonexistent}",
            "2026-13-45T99:99",
            'name=~"("',
            "noop",
        ]
    ),
)


def _documents(kind: str) -> st.SearchStrategy[object]:
    keys = st.sampled_from(_KEYS[kind])
    return st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6),
        max_leaves=30,
    )


def _dump(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


_NOISE = st.binary(max_size=200) | st.text(string.printable + "\u00e9\u2028{}[]:-", max_size=200)
_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(doc=_documents("automation"), noise=_NOISE, raw=st.booleans())
def test_fuzzed_automation_files_only_ever_give_problems(
    tmp_path: Path, doc: object, noise: bytes | str, raw: bool
) -> None:
    path = tmp_path / "fuzz.yaml"
    data = noise if raw else _dump({"skill": "noop", **doc} if isinstance(doc, dict) else doc)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    parsed = parse_automation(path)  # raises nothing
    assert parsed.model is not None or parsed.problems
    for problem in parsed.problems:
        assert problem.path == path and "could not be checked" not in problem.message


@_FUZZ
@given(front=_documents("manifest"), manifest=_documents("manifest"), noise=_NOISE)
def test_fuzzed_skills_only_ever_give_problems(
    tmp_path: Path, front: object, manifest: object, noise: bytes | str
) -> None:
    folder = tmp_path / "fuzzed"
    folder.mkdir(exist_ok=True)
    head = _dump(
        {"name": "fuzzed", "description": "d", **front} if isinstance(front, dict) else front
    )
    body = noise if isinstance(noise, str) else noise.decode("latin-1")
    (folder / "SKILL.md").write_text(f"---\n{head}---\n{body}")
    (folder / "nightshift.yaml").write_text(_dump(manifest))
    skill, problems = parse_skill(folder)
    assert skill is not None or problems
    assert all("could not be checked" not in p.message for p in problems), problems


@_FUZZ
@given(doc=_documents("config"), noise=_NOISE, raw=st.booleans())
def test_fuzzed_config_files_only_ever_give_config_errors(
    tmp_path: Path, doc: object, noise: bytes | str, raw: bool
) -> None:
    path = tmp_path / "config.yaml"
    data = noise if raw else _dump(doc)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    error: ConfigError | None = None
    try:
        load_config(path)
    except ConfigError as exc:
        error = exc
    assert error is None or str(error).startswith(str(path))
