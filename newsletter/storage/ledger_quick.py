"""The ledger writer's commits on the event loop (SQLite): one connection held for the run, never waiting.

A local SQLite commit of a few rows takes well under a millisecond, less than handing it to a thread, so the
ledger writer (``delivery.ledger_writer``) tries each commit on the event loop first, and only one that finds
another process holding the write lock goes to its thread (``Ledger.record``, which waits for it). Waiting
there would stop every SMTP session, timeout and lease renewal of the process, so these commits must not
wait at all: SQLite's busy_timeout is 0 for them.

Each such commit used to check a connection out of the engine's pool and back in, and set busy_timeout to 0
and back to 30 s around it (two PRAGMAs): per commit of a few rows, more CPU than the rows' own writes. A
``QuickRecorder`` holds one connection for the whole run instead, with busy_timeout 0 set once and restored
when it is given back; each commit is ``Ledger.record``'s statements in one transaction on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from newsletter.storage import db
from newsletter.storage.ledger import Ledger, Outcome


class QuickRecorder:
    """``Ledger.record`` for commits that must never wait, on a SQLite connection held until ``close``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._connection = ledger.engine.connect()
        try:
            self._connection.exec_driver_sql("PRAGMA busy_timeout=0")
            self._connection.commit()
        except BaseException:
            self._connection.close()
            raise

    @classmethod
    def open(cls, ledger: Ledger) -> QuickRecorder | None:
        """A recorder for this ledger's database; None unless it is SQLite (a server connection can always
        wait, in a thread: there is nothing to try first)."""
        return cls(ledger) if ledger.engine.dialect.name == "sqlite" else None

    def try_record(self, *, data_phase: Sequence[tuple[int, str]], outcomes: Sequence[Outcome],
                   now: datetime) -> set[int] | None:
        """``Ledger.record`` in one transaction (the rows a taken-over claim holds come back as lost); None, with
        nothing written, when another process holds the write lock."""
        connection = self._connection
        try:
            with connection.begin():
                return self.ledger.record_in(connection, data_phase=data_phase, outcomes=outcomes, now=now)
        except sa.exc.OperationalError as error:
            if db.is_sqlite_busy(error):
                return None
            raise

    def close(self) -> None:
        """Give the connection back to the pool, waiting for locks again like every other (or drop it)."""
        try:
            self._connection.exec_driver_sql(f"PRAGMA busy_timeout={db.SQLITE_BUSY_TIMEOUT_MS}")
            self._connection.commit()
        except sa.exc.SQLAlchemyError:
            self._connection.invalidate()  # never back in the pool as a connection that does not wait
        self._connection.close()
