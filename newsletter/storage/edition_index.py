"""All SQL of the archive's per-edition index, its feed entries and its once-rendered pages.

The web pages read these small rows, never an edition's JSON snapshot, so their cost does not grow with the
number of editions (``newsletter.records.index`` says why). ``EditionStore.insert`` writes the index in the
same transaction as the edition; migration 0009 indexed the editions stored before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from newsletter.records.editions import Edition, Frequency
from newsletter.records.index import EditionSummary, FeedEntry, TopicCount, feed_entries_of, summary_of
from newsletter.storage import db

_FEED_BATCH = 20


def write_index(connection: Connection, edition: Edition) -> None:
    """Index one edition (idempotent: an edition already indexed is left as it is)."""
    exists = connection.execute(
        sa.select(db.edition_index.c.edition_id).where(db.edition_index.c.edition_id == edition.id)
    ).first()
    if exists is not None:
        return
    summary = summary_of(edition)
    connection.execute(db.edition_index.insert().values(
        edition_id=summary.id, frequency=summary.frequency, date=summary.date, slug=summary.slug,
        cutoff=summary.cutoff, created=summary.created, paper_count=summary.paper_count,
        topics=[{"slug": t.slug, "name": t.name, "count": t.count} for t in summary.topics],
    ))
    rows = [
        {"edition_id": e.edition_id, "topic": e.topic, "position": e.position, "date": e.date,
         "paper_id": e.paper_id, "title": e.title, "abs_url": e.abs_url, "authors": e.authors,
         "summary": e.summary, "why": e.why}
        for e in feed_entries_of(edition)
    ]
    for start in range(0, len(rows), 500):
        connection.execute(db.edition_feed_entries.insert(), rows[start : start + 500])


def _summary(row: sa.RowMapping) -> EditionSummary:
    return EditionSummary(
        id=row["edition_id"], frequency=cast(Frequency, row["frequency"]), date=row["date"], slug=row["slug"],
        cutoff=row["cutoff"], created=row["created"], paper_count=row["paper_count"],
        topics=tuple(TopicCount(slug=t["slug"], name=t["name"], count=int(t["count"])) for t in row["topics"]),
    )


class EditionIndex:
    """Reads for the archive pages and feeds; every query is bounded by a page size or a feed length."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def listed(self, *, offset: int, limit: int) -> list[EditionSummary]:
        """Non-empty editions, newest first, one page of them."""
        table = db.edition_index
        query = (sa.select(table).where(table.c.paper_count > 0)
                 .order_by(table.c.date.desc(), table.c.edition_id.desc()).offset(offset).limit(limit))
        with self.engine.connect() as connection:
            return [_summary(row) for row in connection.execute(query).mappings()]

    def version(self) -> tuple[int, int, datetime | None]:
        """(listed editions, newest edition id, newest creation time): what an archive ETag depends on."""
        table = db.edition_index
        query = sa.select(sa.func.count(), sa.func.max(table.c.edition_id), sa.func.max(table.c.created)).where(
            table.c.paper_count > 0)
        with self.engine.connect() as connection:
            count, newest, created = connection.execute(query).one()
        return int(count or 0), int(newest or 0), created

    def by_slug(self, slug: str) -> EditionSummary | None:
        table = db.edition_index
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(table).where(table.c.slug == slug)).mappings().first()
        return _summary(row) if row else None

    def feed(self, topic: str, *, limit: int) -> list[FeedEntry]:
        """The newest ``limit`` distinct papers sent under ``topic``, newest edition first, in rank order.

        Read in batches of the newest rows, so the cost depends on ``limit``, not on the history.
        """
        table, index = db.edition_feed_entries, db.edition_index
        base = (sa.select(table, index.c.slug, index.c.cutoff)
                .join(index, index.c.edition_id == table.c.edition_id)
                .where(table.c.topic == topic)
                .order_by(table.c.date.desc(), table.c.edition_id.desc(), table.c.position))
        entries: list[FeedEntry] = []
        seen: set[str] = set()
        offset = 0
        with self.engine.connect() as connection:
            while len(entries) < limit:
                batch = max(limit, _FEED_BATCH)
                rows = connection.execute(base.offset(offset).limit(batch)).mappings().all()
                for row in rows:
                    if row["paper_id"] in seen or len(entries) >= limit:
                        continue
                    seen.add(row["paper_id"])
                    entries.append(FeedEntry(
                        edition_id=row["edition_id"], edition_slug=row["slug"], date=row["date"],
                        cutoff=row["cutoff"], topic=row["topic"], position=row["position"],
                        paper_id=row["paper_id"], title=row["title"], abs_url=row["abs_url"],
                        authors=row["authors"], summary=row["summary"], why=row["why"],
                    ))
                if len(rows) < batch:
                    break
                offset += batch
        return entries

    def feed_version(self, topic: str) -> tuple[int, datetime | None]:
        """(newest edition id with entries under ``topic``, its cutoff): what a feed's ETag depends on."""
        table, index = db.edition_feed_entries, db.edition_index
        query = (sa.select(table.c.edition_id, index.c.cutoff)
                 .join(index, index.c.edition_id == table.c.edition_id)
                 .where(table.c.topic == topic)
                 .order_by(table.c.date.desc(), table.c.edition_id.desc()).limit(1))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return (int(row[0]), row[1]) if row else (0, None)

    # --- pages rendered once ------------------------------------------------------------------------------

    def page(self, edition_id: int, variant: str) -> tuple[str, str] | None:
        """(etag, html) of a stored page, if this variant was rendered already."""
        table = db.edition_pages
        query = sa.select(table.c.etag, table.c.html).where(table.c.edition_id == edition_id,
                                                            table.c.variant == variant)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return (row[0], row[1]) if row else None

    def store_page(self, edition_id: int, variant: str, *, etag: str, html: str, now: datetime) -> None:
        """Keep a rendered page; a concurrent render of the same variant stores the same bytes, so either wins."""
        values: dict[str, Any] = {"edition_id": edition_id, "variant": variant, "etag": etag, "html": html,
                                  "created": now}
        with self.engine.begin() as connection:
            statement = db.insert_ignoring_duplicates(self.engine, db.edition_pages)
            connection.execute(statement, [values])


def ping(engine: Engine) -> None:
    """One trivial statement: the health check asks whether the database answers, nothing more."""
    with engine.connect() as connection:
        connection.execute(sa.select(sa.literal(1))).scalar_one()


__all__: Sequence[str] = ["EditionIndex", "ping", "write_index"]
