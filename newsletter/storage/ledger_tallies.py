"""The ledger's tallies: per edition, how many rows are in each state, kept up to date by every state change.

Why: `send --workers` follows an edition until every row was tried, and at every poll it asked the ledger for
the edition's counts by state, the rows still outstanding and whether a sender halted; each of those read the
whole edition (100,000 rows at 100,000 readers, every half second), so following a send cost PostgreSQL work
that grew with the list *and* with the send's duration (docs/scale-out.md). A tally is one row per (edition,
state): reading an edition's counts is an eight-row primary-key read, whatever the list's size.

How: every statement of the ledger that moves rows between states (``ledger.py``, ``erasure.py``) counts the
rows it really changed (its rowcount, or RETURNING, never an assumption) and adds the differences here, in
the same transaction, as the transaction's last statement: the tallies commit or roll back with the rows
they count, so a crash at any moment leaves them right. Being last keeps the lock on a tally row (which
concurrent senders share) held only while the transaction commits, and since no transaction waits for
anything after taking it, no two can deadlock over it. Besides the states, ``halts`` counts the rows a
sender stopped on (a refusal by policy, a session error): the dispatcher looks for the reason only once it
grew.

The rows of an edition are created (all zero) when its first ledger rows are added; migration
0015_ledger_tallies filled them for the editions that existed before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from newsletter.storage import db
from newsletter.storage.ledger_reads import STATES, LedgerReads

HALTS = "halts"
KEYS: tuple[str, ...] = (*STATES, HALTS)

ledger_tallies = sa.Table(
    "ledger_tallies",
    db.metadata,
    sa.Column("edition_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(16), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


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
        """Add the differences (call last in the transaction: see the module's docstring)."""
        by_edition: dict[int, dict[str, int]] = {}
        for (edition_id, key), delta in sorted(self.deltas.items()):
            if delta:
                by_edition.setdefault(edition_id, {})[key] = delta
        for edition_id, deltas in by_edition.items():
            keys = sorted(deltas)
            connection.execute(
                ledger_tallies.update()
                .where(ledger_tallies.c.edition_id == edition_id, ledger_tallies.c.key.in_(keys))
                .values(n=ledger_tallies.c.n + sa.case(
                    {key: sa.literal(deltas[key]) for key in keys}, value=ledger_tallies.c.key, else_=0))
            )
        self.deltas.clear()


def open_editions(connection: sa.Connection, edition_ids: Iterable[int]) -> None:
    """Create the (zero) tallies of these editions, unless they exist."""
    rows = [{"edition_id": e, "key": key, "n": 0} for e in sorted(set(edition_ids)) for key in KEYS]
    if rows:
        connection.execute(db.insert_ignoring_duplicates(connection.engine, ledger_tallies), rows)


def read(connection: sa.Connection, edition_id: int) -> dict[str, int] | None:
    """The edition's tallies (every key), or None when the edition has none (no ledger row was ever added)."""
    rows = connection.execute(
        sa.select(ledger_tallies.c.key, ledger_tallies.c.n).where(ledger_tallies.c.edition_id == edition_id)
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
        """The edition's rows per state, and ``halts``, from its tallies (eight rows whatever the list's size).

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
