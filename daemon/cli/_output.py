"""What every command prints with: tables, times, JSON, the store opened for reading."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..config import DaemonConfig
from ..runs import Envelope
from ..store import Store, utcnow


def fmt_time(value: datetime | None) -> str:
    """A stored UTC time in the reader's own zone."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from `start` to `end` (or to now), short."""
    if start is None:
        return "-"
    secs = ((end or utcnow()) - start).total_seconds()
    return f"{secs:.1f}s" if secs < 120 else f"{secs / 60:.1f}m"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_json(value: Any) -> None:
    """`--json`: one document on stdout, for scripts."""
    json.dump(value, sys.stdout, indent=2, default=str)
    print()


def print_envelope(env: Envelope) -> None:
    """One step of a run's log, as Slack and the console show it."""
    from ..reporters import format_event

    print(format_event(env), flush=True)


def open_store(config: DaemonConfig) -> Store:
    """The store the daemon uses, opened by the command itself (the daemon need not run).
    A database that is behind is refused with the command that upgrades it."""
    store = Store(config.resolved_database_url())
    try:
        store.open_schema(upgrade_behind=False)
    except BaseException:
        store.close()
        raise
    return store
