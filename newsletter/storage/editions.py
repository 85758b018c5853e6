"""All SQL for editions and for the per-subscriber record of papers sent.

An edition is unique per (frequency, date): inserting one that already exists (another process won the
race) returns the stored one. ``sent_papers`` holds the papers that versions before migration 0011 recorded
as sent when a ledger was filled; the ledger itself now says what a reader received
(``Ledger.papers_carried``), and these rows are read until housekeeping prunes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from newsletter.records.editions import (
    Edition,
    EditionPaper,
    EditionTopic,
    Frequency,
    content_from_json,
    content_to_json,
)
from newsletter.storage import db
from newsletter.storage.edition_index import write_index
from newsletter.storage.webhook_events import edition_built

_CHUNK = 500


def edition_slug(frequency: Frequency, day: date) -> str:
    return f"{frequency}-{day.isoformat()}"


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _row_to_edition(row: sa.RowMapping) -> Edition:
    papers, topics = content_from_json(row["content"])
    return Edition(
        id=row["id"],
        frequency=row["frequency"],
        date=row["date"],
        slug=row["slug"],
        window_start=row["window_start"],
        cutoff=row["cutoff"],
        created=row["created"],
        papers=papers,
        topics=topics,
        empty_reason=row["empty_reason"],
    )


class EditionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- editions -----------------------------------------------------------------------------------------

    def _one(self, condition: sa.ColumnElement[bool]) -> Edition | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(db.editions).where(condition)).mappings().first()
        return _row_to_edition(row) if row else None

    def get(self, frequency: Frequency, day: date) -> Edition | None:
        return self._one(sa.and_(db.editions.c.frequency == frequency, db.editions.c.date == day))

    def get_by_id(self, edition_id: int) -> Edition | None:
        return self._one(db.editions.c.id == edition_id)

    def get_by_slug(self, slug: str) -> Edition | None:
        return self._one(db.editions.c.slug == slug)

    def previous(self, frequency: Frequency, day: date) -> Edition | None:
        """The latest edition of this frequency dated before ``day``."""
        query = (
            sa.select(db.editions)
            .where(db.editions.c.frequency == frequency, db.editions.c.date < day)
            .order_by(db.editions.c.date.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _row_to_edition(row) if row else None

    def editions(self, *, frequency: Frequency | None = None, limit: int | None = None) -> list[Edition]:
        """Newest first."""
        query = sa.select(db.editions).order_by(db.editions.c.date.desc(), db.editions.c.id.desc()).limit(limit)
        if frequency is not None:
            query = query.where(db.editions.c.frequency == frequency)
        with self.engine.connect() as connection:
            return [_row_to_edition(row) for row in connection.execute(query).mappings()]

    def insert(
        self,
        *,
        frequency: Frequency,
        day: date,
        window_start: datetime,
        cutoff: datetime,
        created: datetime,
        papers: Mapping[str, EditionPaper],
        topics: tuple[EditionTopic, ...],
        empty_reason: str | None,
        publish: bool = True,
    ) -> Edition:
        """Store a new edition and, with ``publish``, its archive index (one transaction); when (frequency,
        date) already exists, return the stored one unchanged. An edition stored unpublished is in no archive
        page or feed until ``publish`` (a built edition is published when its ledger is filled)."""
        values = {
            "frequency": frequency,
            "date": day,
            "slug": edition_slug(frequency, day),
            "window_start": window_start,
            "cutoff": cutoff,
            "created": created,
            "paper_count": len(papers),
            "empty_reason": empty_reason,
            "content": content_to_json(papers, topics),
        }
        try:
            with self.engine.begin() as connection:
                result = connection.execute(db.editions.insert().values(values))
                new_id = int(cast(Sequence[int], result.inserted_primary_key)[0])
                stored = Edition(id=new_id, frequency=frequency, date=day, slug=edition_slug(frequency, day),
                                 window_start=window_start, cutoff=cutoff, created=created, papers=papers,
                                 topics=topics, empty_reason=empty_reason)
                if publish:
                    write_index(connection, stored)
                edition_built(connection, stored, now=created)
        except IntegrityError:
            pass  # built meanwhile by another process: theirs is the edition
        edition = self.get(frequency, day)
        if edition is None:  # pragma: no cover - the row was either inserted or already there
            raise RuntimeError(f"edition {values['slug']} vanished after insert")
        return edition

    def publish(self, edition: Edition) -> None:
        """Put an edition into the archive and its feeds (idempotent): once it is being sent, not before."""
        with self.engine.begin() as connection:
            write_index(connection, edition)

    # --- papers sent per subscriber -----------------------------------------------------------------------

    def already_sent(self, subscriber_id: int, paper_ids: Collection[str]) -> set[str]:
        """Which of ``paper_ids`` this subscriber has already received."""
        return self.already_sent_many([subscriber_id], paper_ids=paper_ids).get(subscriber_id, set())

    def already_sent_many(
        self, subscriber_ids: Collection[int], *, paper_ids: Collection[str] | None = None
    ) -> dict[int, set[str]]:
        """Papers already sent, per subscriber (only subscribers with some appear).

        Pass the edition's ``paper_ids`` to read only the rows that matter (one indexed query per 500
        papers) instead of each subscriber's whole history.
        """
        result: dict[int, set[str]] = defaultdict(set)
        wanted = set(subscriber_ids)
        table = db.sent_papers
        with self.engine.connect() as connection:
            if paper_ids is not None:
                for chunk in _chunks(sorted(set(paper_ids))):
                    rows = connection.execute(
                        sa.select(table.c.subscriber_id, table.c.paper_id).where(table.c.paper_id.in_(chunk))
                    )
                    for subscriber_id, paper_id in rows:
                        if subscriber_id in wanted:
                            result[subscriber_id].add(paper_id)
            else:
                for chunk in _chunks(sorted(wanted)):
                    rows = connection.execute(
                        sa.select(table.c.subscriber_id, table.c.paper_id).where(table.c.subscriber_id.in_(chunk))
                    )
                    for subscriber_id, paper_id in rows:
                        result[subscriber_id].add(paper_id)
        return dict(result)

    def longest_window(self) -> timedelta:
        """The longest window (cut-off minus window start) of any stored edition; zero when none is."""
        with self.engine.connect() as connection:
            windows = connection.execute(sa.select(db.editions.c.window_start, db.editions.c.cutoff)).all()
        return max((cutoff - start for start, cutoff in windows), default=timedelta(0))

    def prune_sent_papers(self, *, before: datetime) -> int:
        """Forget which papers were sent in editions cut off before ``before``; returns rows removed.

        Safe once no edition still to be built can have a window reaching back that far: its papers were
        all first seen before that cut-off, so none can be offered again.
        """
        old = sa.select(db.editions.c.id).where(db.editions.c.cutoff < before)
        with self.engine.begin() as connection:
            removed = connection.execute(db.sent_papers.delete().where(db.sent_papers.c.edition_id.in_(old)))
        return int(removed.rowcount or 0)

    def record_sent(self, edition_id: int, sent: Mapping[int, Iterable[str]]) -> int:
        """Remember that these subscribers received these papers in this edition. Returns rows added.

        The ledger's ``sent`` rows say what a reader received; this writes the older record directly
        (for history kept from before migration 0011). A pair already recorded keeps its first edition.
        """
        values = [
            {"subscriber_id": subscriber_id, "paper_id": paper_id, "edition_id": edition_id}
            for subscriber_id, paper_ids in sent.items()
            for paper_id in dict.fromkeys(paper_ids)
        ]
        if not values:
            return 0
        with self.engine.begin() as own:
            return db.insert_new(own, db.sent_papers, values)
