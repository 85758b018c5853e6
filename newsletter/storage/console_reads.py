"""The web console's reads that no other store answers (all SQL here): a paginated reader search, one
reader's deliveries, delivery counts of many editions at once, and the per-day counts behind the charts.

Each reads what its page shows and no more: one page of readers (the free-text search scans the readers'
addresses and names, which no index serves), one reader's rows through the ledger's reader index, the
counts of the editions listed. ``bench/web.py --console`` measures the pages after a year of history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage.db import deliveries, editions, papers
from newsletter.storage.ledger_reads import STATES
from subscribers.schema import paper_feedback, subscribers

deliveries_by_state = sa.Index("ix_deliveries_state", deliveries.c.state)
"""Rows needing attention (pending, claimed, deferred, ambiguous) are few among millions sent: `status` and the
console's overview count them through this index instead of reading the whole ledger."""


@dataclass(frozen=True)
class ReaderRow:
    id: int
    email: str
    name: str
    status: str
    topics: tuple[str, ...]
    frequency: str
    created: datetime


@dataclass(frozen=True)
class ReaderDelivery:
    edition_id: int
    slug: str
    state: str
    attempts: int
    sent_at: datetime | None
    last_code: int | None
    last_message: str | None
    variant_key: str


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_readers(engine: Engine, *, text: str = "", status: str | None = None, topic: str | None = None,
                   frequency: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[ReaderRow], int]:
    """Readers whose address or name contains ``text`` (any case), filtered; (one page in id order, total)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if text.strip():
        pattern = _like(text.strip().lower())  # addresses are stored in lower case
        if engine.dialect.name == "sqlite":  # SQLite's LIKE ignores ASCII case already, and lower() costs a call a row
            name = subscribers.c.name.like(pattern, escape="\\")
        else:
            name = subscribers.c.name.ilike(pattern, escape="\\")
        conditions.append(sa.or_(subscribers.c.email.like(pattern, escape="\\"), name))
    if status:
        conditions.append(subscribers.c.status == status)
    if frequency:
        conditions.append(subscribers.c.frequency == frequency)
    if topic:  # a JSON list of slugs: the quoted slug appears in its text on SQLite and PostgreSQL alike
        conditions.append(sa.cast(subscribers.c.topics, sa.Text).like(_like(f'"{topic}"'), escape="\\"))
    where = sa.and_(sa.true(), *conditions)
    columns = (subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status, subscribers.c.topics,
               subscribers.c.frequency, subscribers.c.created)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(*columns).where(where).order_by(subscribers.c.id)
                                  .limit(limit).offset(offset)).all()
        if offset == 0 and len(rows) < limit:  # the whole result is on this page: no second scan to count it
            total = len(rows)
        else:
            total = int(connection.execute(sa.select(sa.func.count()).select_from(subscribers).where(where))
                        .scalar_one())
    return [ReaderRow(r[0], r[1], r[2], r[3], tuple(r[4] or ()), r[5], r[6]) for r in rows], total


def has_deliveries(engine: Engine, edition_id: int) -> bool:
    """Whether any ledger row of the edition is written (its send began): one indexed look-up."""
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.exists().where(deliveries.c.edition_id == edition_id))).scalar() \
            is True


def reader_deliveries(engine: Engine, subscriber_id: int, *, limit: int = 50) -> list[ReaderDelivery]:
    """The reader's ledger rows, newest edition first: what was sent to them, and how each attempt ended."""
    query = (sa.select(deliveries.c.edition_id, editions.c.slug, deliveries.c.state, deliveries.c.attempts,
                       deliveries.c.sent_at, deliveries.c.last_code, deliveries.c.last_message,
                       deliveries.c.variant_key)
             .join(editions, editions.c.id == deliveries.c.edition_id)
             .where(deliveries.c.subscriber_id == subscriber_id)
             .order_by(deliveries.c.edition_id.desc()).limit(limit))
    with engine.connect() as connection:
        return [ReaderDelivery(*row) for row in connection.execute(query).all()]


def delivery_counts(engine: Engine, edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per edition, its ledger rows by state (every state present, zero when none), in one query."""
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(STATES, 0) for i in edition_ids}
    if not edition_ids:
        return counts
    query = (sa.select(deliveries.c.edition_id, deliveries.c.state, sa.func.count())
             .where(deliveries.c.edition_id.in_(list(edition_ids)))
             .group_by(deliveries.c.edition_id, deliveries.c.state))
    with engine.connect() as connection:
        for edition_id, state, count in connection.execute(query).all():
            counts[int(edition_id)][str(state)] = int(count)
    return counts


def count_editions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(editions)).scalar_one())


@dataclass(frozen=True)
class EditionRow:
    id: int
    slug: str
    frequency: str
    date: date
    created: datetime
    paper_count: int
    empty_reason: str | None


def edition_page(engine: Engine, *, limit: int, offset: int) -> list[EditionRow]:
    """One page of editions, newest first, without their snapshots (which are large)."""
    query = (sa.select(editions.c.id, editions.c.slug, editions.c.frequency, editions.c.date, editions.c.created,
                       editions.c.paper_count, editions.c.empty_reason)
             .order_by(editions.c.date.desc(), editions.c.id.desc()).limit(limit).offset(offset))
    with engine.connect() as connection:
        return [EditionRow(*row) for row in connection.execute(query).all()]


def _per_day(engine: Engine, column: sa.ColumnElement[datetime], since: datetime,
             *extra: sa.ColumnElement[bool]) -> dict[str, int]:
    day = sa.func.date(column)
    query = sa.select(day, sa.func.count()).where(column >= since, *extra).group_by(day)
    with engine.connect() as connection:
        return {str(d)[:10]: int(n) for d, n in connection.execute(query).all()}


def readers_added_per_day(engine: Engine, *, since: datetime) -> tuple[int, dict[str, int]]:
    """(readers added before ``since``, readers added per day since): the list's growth."""
    with engine.connect() as connection:
        before = int(connection.execute(sa.select(sa.func.count()).select_from(subscribers)
                                        .where(subscribers.c.created < since)).scalar_one())
    return before, _per_day(engine, subscribers.c.created, since)


def papers_per_day(engine: Engine, *, since: datetime) -> dict[str, int]:
    """New papers per day (by when they were first seen)."""
    return _per_day(engine, papers.c.first_seen, since)


def votes_per_day(engine: Engine, *, since: datetime) -> dict[str, tuple[int, int]]:
    """Readers' "more like this" and "less like this" votes per day: (more, less)."""
    more = _per_day(engine, paper_feedback.c.created, since, paper_feedback.c.vote > 0)
    less = _per_day(engine, paper_feedback.c.created, since, paper_feedback.c.vote < 0)
    return {day: (more.get(day, 0), less.get(day, 0)) for day in sorted(set(more) | set(less))}
