"""What every part of the store shares: the engine and a session on it."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session


class Repository:
    """The base of the store's parts, each a set of queries about one kind of row.

    `Store` is made of them; each part reads and writes through `engine` and holds no state
    of its own, so the parts can be read, and tested, one at a time.
    """

    engine: Engine

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)
