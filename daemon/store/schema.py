"""The database schema's version: Alembic migrations in `migrations/`, run by nightshift on a
connection of its own.

A new database is made by running every migration. One made before nightshift kept migrations
(tables, but no `alembic_version`) has the first migration's schema, and is stamped so before
the rest run. A daemon refuses a database that is behind unless told to upgrade it on start.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from ..errors import StoreError

_SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # the schema every database made before migrations has


class SchemaBehind(StoreError):
    """The database's schema is older than this build's."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def head() -> str:
    """The revision this build's code expects."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def _stamped(conn: Connection) -> str | None:
    """The revision Alembic recorded; None both when empty and when made before migrations."""
    return MigrationContext.configure(conn).get_current_revision()


def _before_migrations(conn: Connection) -> bool:
    return _stamped(conn) is None and inspect(conn).has_table("runs")


def current(engine: Engine) -> str | None:
    """The database's revision: None for an empty database, the baseline for one made
    before migrations."""
    with engine.connect() as conn:
        return BASELINE if _before_migrations(conn) else _stamped(conn)


def upgrade(engine: Engine, to: str = "head") -> None:
    """Run the migrations up to `to` (a database made before migrations is stamped first)."""
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        if _before_migrations(conn):
            command.stamp(config, BASELINE)
        command.upgrade(config, to)


def downgrade(engine: Engine, to: str) -> None:
    """Undo migrations down to `to` (`base`: an empty database)."""
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, to)


def ensure(engine: Engine, *, upgrade_behind: bool) -> None:
    """Make an empty database at this build's schema; upgrade one that is behind when
    `upgrade_behind`, else refuse it with the command that upgrades it."""
    have, want = current(engine), head()
    if have == want:
        return
    if have is None or upgrade_behind:
        upgrade(engine)
        return
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if have not in known:
        raise StoreError(
            f"the database is at schema {have}, which this nightshift does not know "
            f"(it expects {want}): it was made by a newer build"
        )
    raise SchemaBehind(
        f"the database is at schema {have} and this nightshift needs {want}: "
        "upgrade it with `nightshift db upgrade` (or set `upgrade_database: true`)"
    )
