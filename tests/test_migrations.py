"""The schema's migrations, on SQLite and PostgreSQL: they make what the models describe, each
undoes and redoes cleanly, and a database of the release before migrations is refused until
`nightshift db upgrade` brings it up with nothing lost."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from daemon.cli import main
from daemon.errors import StoreError
from daemon.store import Store, schema
from daemon.testing import Project

from .test_daemon_process import DaemonProcess

HEAD = schema.head()

FIXTURES = Path(__file__).parent / "fixtures"


def drift(store: Store) -> list[object]:
    """What the database's schema lacks or has beyond the models (nothing, when in step)."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def previous_release(url: str) -> None:
    """Make the database as the release before migrations left it, rows included."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(parsed.database) as conn:
            conn.executescript((FIXTURES / "previous-release.sqlite.sql").read_text())
        return
    store = Store(url)
    try:
        sql = (FIXTURES / "previous-release.postgresql.sql").read_text()
        with store.engine.begin() as conn:
            for chunk in sql.split(";\n"):
                statement = "\n".join(x for x in chunk.splitlines() if not x.startswith("--"))
                if statement.strip():
                    conn.exec_driver_sql(statement)
    finally:
        store.close()


def test_the_migrations_make_the_schema_the_models_describe(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.create_all()
        assert drift(store) == []
        assert schema.current(store.engine) == schema.head()
    finally:
        store.close()


def test_every_migration_undoes_and_redoes_cleanly(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.create_all()
        schema.downgrade(store.engine, "base")
        assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
        assert schema.current(store.engine) is None
        schema.upgrade(store.engine, "0001")
        assert schema.current(store.engine) == "0001"
        schema.upgrade(store.engine)
        assert drift(store) == []
    finally:
        store.close()


def test_a_database_of_the_previous_release_upgrades_with_nothing_lost(
    db_url: str, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    previous_release(db_url)
    config = str(project.write_config(database_url=db_url))

    assert main(["--config", config, "runs"]) == 1
    refused = capsys.readouterr().err
    assert f"the database is at schema 0001 and this nightshift needs {HEAD}" in refused
    assert "nightshift db upgrade" in refused
    assert main(["--config", config, "db", "status"]) == 1
    assert f"0001 (behind: this build needs {HEAD})" in capsys.readouterr().out

    assert main(["--config", config, "db", "upgrade"]) == 0
    assert f"database schema: 0001 → {HEAD}" in capsys.readouterr().out
    assert main(["--config", config, "db", "upgrade"]) == 0  # safe to repeat
    assert "already this build's" in capsys.readouterr().out

    assert main(["--config", config, "show", "1", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert (run["automation"], run["status"], run["summary"]) == (
        "issue-triage",
        "succeeded",
        "labelled #7",
    )
    assert run["inputs"] == {"issue": 7}
    assert [e["event"]["type"] for e in run["events"]] == ["started", "finished"]
    assert [(a["request_id"], a["decided_by"]) for a in run["approvals"]] == [("label-1", "ann")]
    assert main(["--config", config, "explain", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"][0]["run_id"] == 1
    store = Store(db_url)
    try:
        assert drift(store) == []
        assert store.last_fire("nightly-deps", "cron-0") is not None
        store.record_refusal("github", "d-2", 401, "invalid signature", "127.0.0.1")
        assert [r.delivery for r in store.refusals()] == ["d-2"]
        # New rows take ids after the old ones (PostgreSQL's sequences came along).
        assert store.create_approval(1, "push-1", "push", "", None).id == 2
    finally:
        store.close()


def test_the_daemon_refuses_a_database_behind_unless_told_to_upgrade(project: Project) -> None:
    url = f"sqlite:///{project.root}/state/old.db"
    previous_release(url)
    config = project.write_config(database_url=url)
    refusing = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), "run"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refusing.returncode == 1
    assert refusing.stderr.strip().splitlines()[-1] == (
        f"nightshift: the database is at schema 0001 and this nightshift needs {HEAD}: upgrade it "
        "with `nightshift db upgrade` (or set `upgrade_database: true`)"
    )

    upgrading = DaemonProcess(
        project, project.write_config(database_url=url, upgrade_database=True)
    )
    upgrading.start()
    try:
        assert [r["summary"] for r in upgrading.runs()] == ["labelled #7"]
    finally:
        upgrading.stop(signal.SIGTERM)


async def test_a_database_error_leaves_the_store_as_nightshifts_own(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        store.create_all()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE run_events")
        with pytest.raises(StoreError) as caught:
            await store.call(store.run_events, 1)
        assert str(caught.value) == (
            "database error in run_events: OperationalError: no such table: run_events"
        )
        # The same boundary for a caller on its own thread (the CLI's reads).
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE event_decisions")
            conn.exec_driver_sql("DROP TABLE events")
        with pytest.raises(StoreError, match="database error in list_events: OperationalError"):
            store.list_events()
        with pytest.raises(StoreError, match="database error in get_event: OperationalError"):
            store.get_event(1)  # SQLite's fast path: the same boundary
    finally:
        store.close()
