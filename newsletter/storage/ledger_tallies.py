"""The ledger's tallies: per edition, how many rows are in each state, kept up to date by every state change.

Why: `send --workers` follows an edition until every row was tried, and at every poll it asked the ledger for
the edition's counts by state, the rows still outstanding and whether a sender halted; each of those read the
whole edition (100,000 rows at 100,000 readers, every half second), so following a send cost PostgreSQL work
that grew with the list *and* with the send's duration (docs/scale-out.md). A tally is a few rows per (edition,
state) (``STRIPES``): reading an edition's counts is a primary-key range read, whatever the list's size.

How: every statement of the ledger that moves rows between states (``ledger.py``, ``erasure.py``) counts the
rows it really changed (its rowcount, or RETURNING, never an assumption) and adds the differences here, in
the same transaction, as the transaction's last statement: the tallies commit or roll back with the rows
they count, so a crash at any moment leaves them right. Being last keeps the lock on a tally row (which
concurrent senders share) held only while the transaction commits, and since no transaction waits for
anything after taking it, no two can deadlock over it. Besides the states, ``halts`` counts the rows a
sender stopped on (a refusal by policy, a session error): the dispatcher looks for the reason only once it
grew.

A tally's rows are created by their first change (a missing one is zero); migration 0015_ledger_tallies
filled them for the editions that existed before.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.storage import db
from newsletter.storage.bulk import BulkStatements
from newsletter.storage.ledger_reads import STATES, LedgerReads

HALTS = "halts"
KEYS: tuple[str, ...] = (*STATES, HALTS)

STRIPES = 16
"""Each (edition, key) is kept as this many rows whose sum is the tally; a transaction adds to one of them,
drawn at random: two senders committing at once rarely wait for the same row (a single row per tally made every
commit of every worker wait for the previous one's, the lock being held until that commit's WAL flush)."""

ledger_tallies = sa.Table(
    "ledger_tallies",
    db.metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("stripe", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


def _add_statement(insert: Any) -> Any:
    statement = insert(ledger_tallies).values(
        edition_id=sa.bindparam("edition"), key=sa.bindparam("tally"), stripe=sa.bindparam("stripe"),
        n=sa.bindparam("delta"))
    return statement.on_conflict_do_update(index_elements=["edition_id", "key", "stripe"],
                                           set_={"n": ledger_tallies.c.n + statement.excluded.n})


_ADD_BULK = {"postgresql": BulkStatements(_add_statement(postgresql.insert)),
             "sqlite": BulkStatements(_add_statement(sqlite.insert))}
"""Run at the end of every transaction that moves rows (a few per message sent): compiled once, not per call;
the row of a stripe is created by its first addition."""


class TallyChanges:
    """Differences to add to the tallies, per (edition, key), gathered while a transaction changes rows."""

    def __init__(self) -> None:
        self.deltas: Counter[tuple[int, str]] = Counter()

    def move(self, edition_id: int, source: str, target: str, rows: int) -> None:
        """``rows`` rows of the edition went from state ``source`` to state ``target``."""
        if rows and source != target:
            self.deltas[(edition_id, source)] -= rows
            self.deltas[(edition_id, target)] += rows

    def add(self, edition_id: int, key: str, rows: int) -> None:
        if rows:
            self.deltas[(edition_id, key)] += rows

    def move_each(self, editions: Iterable[int], source: str, target: str) -> None:
        """One row per item of ``editions`` (the edition of each row moved, as RETURNING gave them)."""
        for edition_id, rows in Counter(editions).items():
            self.move(int(edition_id), source, target, rows)

    def write(self, connection: sa.Connection) -> None:
        """Add the differences (call last in the transaction: see the module's docstring).

        One executemany of a statement compiled once per dialect (``storage.bulk``), rows in (edition, key)
        order, so every transaction takes the tally rows' locks in the same order.
        """
        stripe = secrets.randbelow(STRIPES)
        rows = [{"edition": edition_id, "tally": key, "stripe": stripe, "delta": delta}
                for (edition_id, key), delta in sorted(self.deltas.items()) if delta]
        _ADD_BULK[connection.dialect.name].for_dialect(connection.dialect).run(connection, rows)
        self.deltas.clear()


def read(connection: sa.Connection, edition_id: int) -> dict[str, int] | None:
    """The edition's tallies (every key), or None when the edition has none (no ledger row was ever added)."""
    rows = connection.execute(
        sa.select(ledger_tallies.c.key, sa.func.sum(ledger_tallies.c.n))
        .where(ledger_tallies.c.edition_id == edition_id).group_by(ledger_tallies.c.key)
    ).all()
    if not rows:
        return None
    tallies = dict.fromkeys(KEYS, 0)
    tallies.update({str(key): int(n) for key, n in rows})
    return tallies


def forget(connection: sa.Connection, editions: sa.Select[Any]) -> None:
    """Drop the tallies of these editions (their ledger rows were pruned)."""
    connection.execute(ledger_tallies.delete().where(ledger_tallies.c.edition_id.in_(editions)))


class TallyReads(LedgerReads):
    """What following a send reads at every poll: the tallies, and the few rows no tally can say."""

    def tallies(self, edition_id: int) -> dict[str, int]:
        """The edition's rows per state, and ``halts``, from its tallies (a few rows whatever the list's size).

        An edition without tallies (none of its rows was added through the ledger) is counted from its rows.
        """
        with self.engine.connect() as connection:
            found = read(connection, edition_id)
        return found if found is not None else {**self.counts(edition_id), HALTS: 0}

    def deferred_due(self, edition_id: int, *, due_by: datetime) -> int:
        """Deferred rows whose retry time is ``due_by`` or earlier (an index range of the deferred rows only)."""
        deliveries = db.deliveries
        with self.engine.connect() as connection:
            return int(connection.execute(
                sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.edition_id == edition_id, deliveries.c.state == "deferred",
                    deliveries.c.next_attempt_at <= due_by)
            ).scalar_one())
