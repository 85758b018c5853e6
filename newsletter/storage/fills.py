"""Which editions' ledger fills were begun and not finished: the record that makes a fill resumable.

``prepare`` writes the ledger in many transactions (a variant at a time). It records the fill as begun
*before* the edition is even built (keyed by frequency and date, so a kill between building the edition
and writing its first row is covered too) and as finished after the last row. A process killed in between
leaves the record open: the retry job (which `serve` runs at start) completes the fill, and `status`
shows the edition unfinished meanwhile.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

fills = db.edition_fills


class FillStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(self, frequency: str, day: date, *, now: datetime) -> None:
        """Record the fill of (frequency, day) as begun; one that was finished is open again until done."""
        with self.engine.begin() as connection:
            updated = connection.execute(
                fills.update().where(fills.c.frequency == frequency, fills.c.date == day)
                .values(started=now, finished=None)
            ).rowcount
            if not updated:
                connection.execute(db.insert_ignoring_duplicates(self.engine, fills),
                                   [{"frequency": frequency, "date": day, "started": now, "finished": None}])

    def finish(self, frequency: str, day: date, *, now: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                fills.update().where(fills.c.frequency == frequency, fills.c.date == day).values(finished=now)
            )

    def forget(self, frequency: str, day: date) -> None:
        with self.engine.begin() as connection:
            connection.execute(fills.delete().where(fills.c.frequency == frequency, fills.c.date == day))

    def unfinished(self) -> list[tuple[str, date]]:
        """(frequency, date) of every fill begun and not finished, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(fills.c.frequency, fills.c.date).where(fills.c.finished.is_(None))
                .order_by(fills.c.date, fills.c.frequency)
            ).all()
        return [(str(f), d) for f, d in rows]

    def known(self, frequency: str, day: date) -> bool:
        """Whether a fill of (frequency, day) was ever begun (finished or not)."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(fills).where(fills.c.frequency == frequency,
                                                                    fills.c.date == day)
            ).scalar_one() > 0

    def is_unfinished(self, frequency: str, day: date) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(sa.func.count()).select_from(fills).where(
                    fills.c.frequency == frequency, fills.c.date == day, fills.c.finished.is_(None))
            ).scalar_one() > 0
