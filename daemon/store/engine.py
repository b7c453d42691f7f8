"""Engine set-up: SQLite tuned for one writer-process at a time, or PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import create_engine

_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for the lock before "database is locked"
_TRUNCATE_WAIT_MS = 200  # … and a truncating checkpoint only this long for the others


def _owner_only(path: Path) -> None:
    """Create the database file (and its folder) readable by its owner only, wherever the
    URL points: it holds payloads, prompts and run logs. SQLite gives the -wal and -shm files
    the database file's own mode, so one file's mode covers all three."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)  # a file made by an older build, or by hand


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and `BEGIN IMMEDIATE` transactions.

    Plain `BEGIN` lets a read transaction fail to upgrade to a write under concurrent
    writers ("database is locked"); `BEGIN IMMEDIATE` takes the write lock up front.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        _owner_only(Path(parsed.database))
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        # Checkpoints run on a background connection (start_checkpointer), not inside
        # whichever request's commit happens to cross the threshold.
        cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Checkpointer:
    """Copies the SQLite WAL back into the database every `interval` seconds, on its own
    thread and connection.

    PASSIVE checkpoints never block writers, but under continuous writes they never let the
    log start over either: SQLite restarts the WAL only when a writer finds every frame copied
    back, and a write lands during each checkpoint (seen: ~2 MB of WAL a run, back to back).
    So once the log passes `truncate_at` frames, one TRUNCATE checkpoint copies the rest and
    empties the file; it waits at most `_TRUNCATE_WAIT_MS` for readers and writers (who wait
    in turn on their busy timeout), and tries again at the next interval if it could not.
    """

    def __init__(self, engine: Engine, interval: float, truncate_at: int = 4096) -> None:
        self._engine = engine
        self._interval = interval
        self._truncate_at = truncate_at  # frames; 4096 is 16 MiB of 4 KiB pages
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.checkpoint()

    def checkpoint(self) -> None:
        """One checkpoint: PASSIVE, and TRUNCATE when the log has grown past its bound."""
        # A raw DBAPI connection: no SQLAlchemy transaction may wrap a checkpoint.
        try:
            conn = self._engine.raw_connection()
        except Exception:
            return
        try:
            with contextlib.suppress(Exception):  # a busy database just means: next time
                cur = conn.cursor()
                _busy, frames, _copied = cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= self._truncate_at:
                    cur.execute(f"PRAGMA busy_timeout={_TRUNCATE_WAIT_MS}")
                    try:
                        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    finally:  # the connection goes back to the pool: its usual patience
                        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.checkpoint()


def start_checkpointer(engine: Engine, interval: float = 1.0) -> Checkpointer:
    """Start WAL checkpoints in the background for a SQLite engine."""
    return Checkpointer(engine, interval)
