"""Hot reload on a real folder: add, edit, break, fix, delete, rename — waiting on conditions."""

from __future__ import annotations

import os

from daemon.testing import Project, running_daemon, wait_for

CRON = """\
name: {name}
triggers:
  - type: cron
    expr: "{expr}"
skill: noop
"""


async def test_add_edit_break_fix_rename_delete(project: Project) -> None:
    project.skill("noop", "print()")
    async with running_daemon(project.config()) as d:
        assert d.scheduler.schedules() == []

        path = project.automation("nightly", CRON.format(name="nightly", expr="0 2 * * *"))
        await wait_for(lambda: d.scheduler.schedules() == [("nightly", "cron-0", "cron")])
        assert "nightly" in d.catalog().automations

        path.write_text(CRON.format(name="nightly", expr="0 4 * * *"))
        await wait_for(lambda: d.catalog().automations["nightly"].triggers[0].expr == "0 4 * * *")  # type: ignore[union-attr]
        await wait_for(lambda: d.scheduler.next_fires()["nightly"].hour == 4)  # type: ignore[union-attr]

        # A broken edit: the error names file, line and field; the last good version keeps running.
        path.write_text(
            CRON.format(name="nightly", expr="0 4 * * *").replace(
                "skill: noop", "skill: noop\nretries: 3"
            )
        )
        problems = await wait_for(lambda: d.catalog().problems)
        assert [f"{p.path.name}:{p.line}: {p.field}" for p in problems] == [
            "nightly.yaml:6: retries"
        ]
        assert d.catalog().automations["nightly"].triggers[0].expr == "0 4 * * *"  # type: ignore[union-attr]
        assert d.scheduler.schedules() == [("nightly", "cron-0", "cron")]
        run = await d.dispatcher.manual("nightly", {}, "test")  # still runnable
        assert run.id is not None

        path.write_text(CRON.format(name="nightly", expr="0 5 * * *"))
        await wait_for(lambda: not d.catalog().problems)
        await wait_for(lambda: d.scheduler.next_fires()["nightly"].hour == 5)  # type: ignore[union-attr]

        renamed = path.with_name("renamed.yaml")
        os.replace(path, renamed)
        await wait_for(lambda: d.catalog().sources.get("nightly") == renamed.resolve())
        await wait_for(lambda: d.scheduler.next_fires().get("nightly"))
        assert d.scheduler.schedules() == [("nightly", "cron-0", "cron")]
        assert not d.catalog().problems

        renamed.unlink()
        await wait_for(lambda: d.scheduler.schedules() == [])
        assert "nightly" not in d.catalog().automations


async def test_copy_then_delete_never_duplicates_a_schedule(project: Project) -> None:
    project.skill("noop", "print()")
    first = project.automation("one", CRON.format(name="same", expr="0 2 * * *"))
    async with running_daemon(project.config()) as d:
        assert d.scheduler.schedules() == [("same", "cron-0", "cron")]
        second = project.automation("two", CRON.format(name="same", expr="0 3 * * *"))
        problems = await wait_for(lambda: d.catalog().problems)
        assert "already defined in" in problems[0].message and problems[0].path == second.resolve()
        assert d.scheduler.schedules() == [("same", "cron-0", "cron")]
        first.unlink()
        await wait_for(lambda: d.catalog().sources.get("same") == second.resolve())
        await wait_for(lambda: d.scheduler.next_fires()["same"].hour == 3)  # type: ignore[union-attr]
        assert d.scheduler.schedules() == [("same", "cron-0", "cron")]
        assert not d.catalog().problems


async def test_editing_a_skill_revalidates_the_automations_using_it(project: Project) -> None:
    skill = project.skill("typed", "print()", inputs={"n": {"type": "integer", "default": 1}})
    project.automation("uses", skill="typed", inputs={"n": 2})
    async with running_daemon(project.config()) as d:
        assert "uses" in d.catalog().automations
        (skill / "nightshift.yaml").write_text("entrypoint: scripts/run.py\ninputs: {}\n")
        problems = await wait_for(lambda: d.catalog().problems)
        assert problems[0].field == "inputs.n" and "has no input 'n'" in problems[0].message
