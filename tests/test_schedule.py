"""Schedules: crontab semantics, DST, misfire policies after downtime, one fire per slot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from daemon.agents import default_backends
from daemon.bus import EventBus
from daemon.config import StateLayout
from daemon.dispatch import Dispatcher
from daemon.executor import Executor
from daemon.loader import Catalog, Loader
from daemon.sources import Scheduler, next_after
from daemon.spec.cron import parse_crontab
from daemon.store import Store
from daemon.testing import Project, wait_for

BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, tz: str, start: datetime, count: int) -> list[datetime]:
    trigger = parse_crontab(expr, tz)
    out, cur = [], start
    for _ in range(count):
        nxt = next_after(trigger, cur)
        assert nxt is not None
        out.append(nxt)
        cur = nxt
    return out


def test_day_of_week_zero_is_sunday_like_crontab() -> None:
    (first,) = fires("0 9 * * 0", "UTC", datetime(2026, 11, 24, tzinfo=UTC), 1)  # a Tuesday
    assert first == datetime(2026, 11, 29, 9, tzinfo=UTC) and first.weekday() == 6
    weekdays = fires("0 9 * * 1-5", "UTC", datetime(2026, 11, 27, 10, tzinfo=UTC), 3)  # Friday
    assert [d.strftime("%a") for d in weekdays] == ["Mon", "Tue", "Wed"]
    assert fires("@weekly", "UTC", datetime(2026, 11, 24, tzinfo=UTC), 1)[0].weekday() == 6


def test_both_day_fields_restricted_is_refused() -> None:
    with pytest.raises(ValueError, match="either day-of-month or day-of-week"):
        parse_crontab("0 9 1 * 1", "UTC")


def test_daily_cron_across_spring_forward_fires_once_a_day() -> None:
    got = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC), 4)
    local = [d.astimezone(BERLIN) for d in got]
    assert [d.day for d in local] == [27, 28, 29, 30]
    # 02:30 does not exist on 29 March; the job runs in the hour after the jump.
    assert local[2].strftime("%H:%M %Z") == "03:30 CEST"
    assert local[3].strftime("%H:%M %Z") == "02:30 CEST"


def test_daily_cron_across_fall_back_fires_once_and_does_not_get_stuck() -> None:
    got = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 23, tzinfo=UTC), 5)
    local = [d.astimezone(BERLIN) for d in got]
    assert [d.day for d in local] == [23, 24, 25, 26, 27]
    assert local[2].strftime("%H:%M %Z") == "02:30 CEST"


def test_wildcard_hour_cron_counts_real_time_through_the_repeated_hour() -> None:
    got = fires("*/30 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 45, tzinfo=UTC), 4)
    assert [d - got[0] for d in got] == [timedelta(minutes=30 * i) for i in range(4)]


def test_interval_slots_are_anchored_across_restarts() -> None:
    from daemon.spec import IntervalTrigger

    spec = IntervalTrigger(type="interval", every=timedelta(minutes=15))
    now = datetime(2026, 11, 24, 10, 7, 13, tzinfo=UTC)
    assert next_after(spec.build(), now) == next_after(spec.build(), now)
    assert next_after(spec.build(), now) == datetime(2026, 11, 24, 10, 15, tzinfo=UTC)


# -- misfire handling over a real store ------------------------------------------------------
def hourly(project: Project, policy: str, grace: str = "3h") -> Catalog:
    project.skill("noop", "print()")
    project.automation(
        "hourly",
        skill="noop",
        triggers=[{"type": "cron", "expr": "0 * * * *"}],
        policies={"misfire": {"policy": policy, "grace": grace}},
    )
    catalog = Loader(project.automations, project.skills).load()
    assert not catalog.problems
    return catalog


def parts(store: Store, catalog: Catalog, project: Project) -> tuple[Scheduler, Executor]:
    executor = Executor(
        store=store,
        bus=EventBus(store),
        catalog=lambda: catalog,
        backends=default_backends(project.root / "state"),
        max_runs=1,
        state=StateLayout(project.root),
        base_dir=project.root,
    )
    return Scheduler(store, Dispatcher(store, executor, lambda: catalog)), executor


def decisions(store: Store) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in store.list_events(limit=1000):
        found = store.get_event(event.id or 0)
        assert found is not None
        for d in found[1]:
            out.setdefault(d.decision, []).append(event.payload.get("scheduled_for", "")[11:16])
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("policy", "ran", "skipped"),
    [
        ("skip", [], ["01:00", "02:00", "03:00", "04:00", "05:00"]),
        ("run_once", ["05:00"], ["01:00", "02:00", "03:00", "04:00"]),
        ("run_all", ["03:00", "04:00", "05:00"], ["01:00", "02:00"]),
    ],
)
async def test_restart_after_downtime_applies_the_misfire_policy_visibly(
    project: Project, db_url: str, policy: str, ran: list[str], skipped: list[str]
) -> None:
    catalog = hourly(project, policy)
    store = Store(db_url)
    store.create_all()
    # The daemon last fired the midnight slot, then was down until 05:30.
    store.mark_schedule("hourly", "cron-0", datetime(2026, 11, 24, 0, tzinfo=UTC))
    with freeze_time("2026-11-24 05:30:00", real_asyncio=True):
        scheduler, executor = parts(store, catalog, project)
        await scheduler.sync(catalog, catch_up=True)
        assert decisions(store) == ({"matched": ran} if ran else {}) | {"skipped": skipped}
        assert len(executor.queued_ids) == len(ran)
        # Restarting again at the same moment neither re-runs nor re-records anything.
        again, executor2 = parts(store, catalog, project)
        await again.sync(catalog, catch_up=True)
        assert len(store.list_events(limit=1000)) == len(ran) + len(skipped)
        assert executor2.queued_ids == []
        assert scheduler.next_fires()["hourly"] == datetime(2026, 11, 24, 6, tzinfo=UTC)
    store.close()


async def test_many_missed_fires_are_summarised_not_silent(project: Project) -> None:
    project.skill("noop", "print()")
    project.automation(
        "often",
        skill="noop",
        triggers=[{"type": "interval", "every": "1m"}],
        policies={"misfire": "skip"},
    )
    catalog = Loader(project.automations, project.skills).load()
    store = Store(f"sqlite:///{project.root / 'db.sqlite'}")
    store.create_all()
    store.mark_schedule("often", "interval-0", datetime(2026, 11, 20, tzinfo=UTC))
    with freeze_time("2026-11-21 00:00:30", real_asyncio=True):
        scheduler, _ = parts(store, catalog, project)
        await scheduler.sync(catalog, catch_up=True)
    events = store.list_events(limit=1000)
    summary = [e for e in events if e.type == "skipped_fires"]
    # 1380 fires older than the 1h grace: 100 recorded one by one, the rest in one summary;
    # the 60 within grace are skipped by the policy and each recorded.
    assert len(summary) == 1 and summary[0].payload["count"] == 1380 - 100
    assert sum(1 for e in events if e.type == "fire") == 100 + 60
    store.close()


async def test_a_due_slot_fires_while_running(project: Project) -> None:
    catalog = hourly(project, "run_once")
    store = Store(f"sqlite:///{project.root / 'db.sqlite'}")
    store.create_all()
    with freeze_time("2026-11-24 09:59:59", real_asyncio=True) as frozen:
        scheduler, executor = parts(store, catalog, project)
        await scheduler.sync(catalog)
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.05)
        assert executor.queued_ids == []
        frozen.move_to("2026-11-24 10:00:00.5")
        await wait_for(lambda: executor.queued_ids, 5)
        run = store.get_run(executor.queued_ids[0])
        assert run.trigger == "schedule:cron-0"
        task.cancel()
    store.close()


async def test_two_replicas_fire_each_slot_once(project: Project, db_url: str) -> None:
    catalog = hourly(project, "run_all", grace="12h")
    stores = [Store(db_url), Store(db_url)]
    stores[0].create_all()
    stores[0].mark_schedule("hourly", "cron-0", datetime(2026, 11, 24, 0, tzinfo=UTC))
    with freeze_time("2026-11-24 05:30:00", real_asyncio=True):
        replicas = [parts(s, catalog, project) for s in stores]
        await asyncio.gather(*(sched.sync(catalog, catch_up=True) for sched, _ in replicas))
    queued = sum(len(executor.queued_ids) for _, executor in replicas)
    assert queued == 5
    assert len(stores[0].list_runs(limit=100)) == 5
    for s in stores:
        s.close()


async def test_editing_a_schedule_while_running_fires_no_backlog(project: Project) -> None:
    catalog = hourly(project, "run_all", grace="12h")
    store = Store(f"sqlite:///{project.root / 'db.sqlite'}")
    store.create_all()
    store.mark_schedule("hourly", "cron-0", datetime(2026, 11, 24, 5, tzinfo=UTC))
    with freeze_time("2026-11-24 05:10:00", real_asyncio=True) as frozen:
        scheduler, executor = parts(store, catalog, project)
        await scheduler.sync(catalog, catch_up=True)
        assert executor.queued_ids == []
        frozen.move_to("2026-11-24 09:45:00")
        project.automation(
            "hourly",
            skill="noop",
            triggers=[{"type": "cron", "expr": "30 * * * *"}],
            policies={"misfire": {"policy": "run_all", "grace": "12h"}},
        )
        edited = Loader(project.automations, project.skills).load()
        await scheduler.sync(edited)  # a reload: the new spec counts from now
        assert executor.queued_ids == [] and store.list_events() == []
        assert scheduler.next_fires()["hourly"] == datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    store.close()
