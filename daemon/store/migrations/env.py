"""Alembic's entry for nightshift's schema. nightshift runs it itself (`store.schema`), on a
connection it opened, so the URL (which may hold a password) never goes through a config
file; `alembic` run by hand is not how a database is upgraded (`nightshift db upgrade` is)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from daemon.store import tables  # noqa: F401  (the models register their tables)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite alters a table by copying it: batch mode does that where a migration asks.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
