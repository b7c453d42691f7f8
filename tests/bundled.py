"""Running the bundled automations as shipped: their YAML with only the endpoints swapped for
the local doubles, and the repository's own `skills/` folder."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from daemon.app import Daemon
from daemon.testing import Project
from daemon.testing.github import GitHubDouble
from daemon.testing.slack import SlackDouble

ROOT = Path(__file__).parents[1]
HOOK_SECRET = "bundled-hook-secret"
AM_TOKEN = "bundled-am-token"
ANN = "U0ANN"


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` over `base`, nested dicts merged; a None value deletes the key."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def install(project: Project, name: str, **patch: Any) -> dict[str, Any]:
    """Write the bundled `automations/<name>.yaml`, enabled, reporting to #ops, with `patch`."""
    data = yaml.safe_load((ROOT / "automations" / f"{name}.yaml").read_text())
    data = merge(data, {"enabled": True, "report": {"channel": "#ops", "approvers": [ANN]}})
    data = merge(data, patch)
    project.automation(name, yaml.safe_dump(data, sort_keys=False))
    return data


def config(project: Project, slack: SlackDouble, gh: GitHubDouble, **extra: Any) -> Any:
    """A daemon config using the bundled skills, the Slack double and the GitHub double."""
    return project.config(
        skills_dir=str(ROOT / "skills"),
        slack={
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "base_url": slack.base_url,
            "min_interval": "10ms",
        },
        github={
            "api_url": gh.base_url,
            "token": "${NIGHTSHIFT_TEST_GH_TOKEN}",
            "write_interval": 0,
        },
        sources={
            "github": {"secret": HOOK_SECRET, "bot_login": "nightshift-bot"},
            "alertmanager": {"token": AM_TOKEN},
        },
        **extra,
    )


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (ROOT / "tests" / "fixtures" / "github" / f"{name}.json").read_text()
    )
    return data


async def fire_cron(d: Daemon, name: str, slot: datetime) -> int:
    """Fire the automation's first cron trigger for `slot`, as the scheduler does; the run id."""
    run = await d.dispatcher.fire(d.catalog().automations[name], "cron-0", slot, late=False)
    assert run is not None and run.id is not None and run.trigger == "schedule:cron-0"
    return run.id
