"""Which SQLite file a running process writes to, so it notices when that file is replaced or deleted.

Pooled SQLite connections keep the inode they opened: after the file is restored from a backup, moved or
deleted, a long-running `serve` goes on writing sign-ups, unsubscribes, ledger rows and run records into a
file nobody else sees, and they vanish with the process. ``DatabaseFile`` remembers the file's device and
inode when the process starts and says, when asked (at each job and each lease renewal), whether the path
still names that file. PostgreSQL and in-memory databases have no file: nothing to check.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import Engine


class DatabaseFile:
    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self.path = Path(database).resolve() if database and database != ":memory:" else None
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def changed(self) -> str | None:
        """Why the path no longer names the file this process opened; None while it does (or has no file)."""
        if self.path is None or self.identity is None:
            return None
        now = self._identity()
        if now is None:
            return f"the database file {str(self.path)!r} was deleted or moved away"
        if now != self.identity:
            return f"the database file {str(self.path)!r} was replaced by another file"
        return None
