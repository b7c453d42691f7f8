"""daemon.skillkit from inside a real script run: commands never get the run's GitHub token,
and the repository's own code (`isolated`) runs sandboxed with no secrets at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.runs import RunStatus
from daemon.testing import Project, running_daemon
from daemon.workspace import sandbox

from .helpers import events, start_run, wait_status

SCRIPT = """\
from daemon.skillkit import SkillRun

run = SkillRun.start()
plain = run.sh(["sh", "-c", "env"])
boxed = run.sh(["sh", "-c", f"env; echo x > {run.inputs['outside']}"], isolated=True)
run.finish("succeeded", "done")
"""


async def test_commands_get_no_github_token_and_isolated_ones_no_secrets(
    project: Project, tmp_path: Path
) -> None:
    if sandbox.available() is None:
        pytest.fail("bubblewrap is missing: CI installs it", pytrace=False)
    outside = tmp_path / "outside.txt"
    project.skill("probe", SCRIPT, inputs={"outside": {"type": "string"}})
    project.automation(
        "probe",
        skill="probe",
        inputs={"outside": str(outside)},
        env={"GITHUB_TOKEN": "ghp_run_token_value", "MY_API_TOKEN": "other-secret-value"},
    )
    async with running_daemon(project.config()) as d:
        run_id = await start_run(d, "probe")
        await wait_status(d, run_id, RunStatus.SUCCEEDED, timeout=30)
        plain, boxed = [e for e in await events(d, run_id) if e["type"] == "command"]
    assert "GITHUB_TOKEN" not in plain["output_tail"]  # never handed to a command
    assert "MY_API_TOKEN=" in plain["output_tail"]  # a lock tool may need its registry's key
    assert "TOKEN" not in boxed["output_tail"]  # the repository's own code gets no secrets
    assert not outside.exists()  # and what it writes outside its folder never lands
    assert boxed["command"].startswith("sh -c env;")  # shown as asked, not as wrapped
