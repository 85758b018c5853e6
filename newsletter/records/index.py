"""The small per-edition index the archive pages and feeds read, built once from an edition. Pure (no I/O).

Why it exists: an edition's stored snapshot is its full JSON (every paper's abstract, links, reasons), and
parsing it costs about 15 ms per edition. Reading every snapshot on each ``/archive`` or feed request made
those pages cost more with every edition sent (5 s for 300 editions). The index holds only what the listings
show — the edition's id, date, slug, paper count, per-topic counts and, per topic, each entry's paper id,
title and the few feed fields already shortened — so a request reads a page of small rows whatever the
history. The snapshot stays the source of truth: the index is built from it (migration 0009 indexed the
editions stored before it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from newsletter.records.editions import Edition, Frequency
from newsletter.records.text import collapse_whitespace, short_authors, shorten

SUMMARY_CHARS = 1200
"""A feed entry's summary is cut here once, at index time (the feed showed the same before)."""


@dataclass(frozen=True, kw_only=True)
class TopicCount:
    slug: str
    name: str
    count: int


@dataclass(frozen=True, kw_only=True)
class EditionSummary:
    """One archive line: what ``/archive`` lists, without any paper."""

    id: int
    frequency: Frequency
    date: date
    slug: str
    cutoff: datetime
    created: datetime
    paper_count: int
    topics: tuple[TopicCount, ...]


@dataclass(frozen=True, kw_only=True)
class FeedEntry:
    """One paper sent under one topic in one edition, with the Atom fields already shortened."""

    edition_id: int
    edition_slug: str
    date: date
    cutoff: datetime
    topic: str
    position: int
    paper_id: str
    title: str
    abs_url: str | None
    authors: str
    summary: str
    why: str


def summary_of(edition: Edition) -> EditionSummary:
    return EditionSummary(
        id=edition.id, frequency=edition.frequency, date=edition.date, slug=edition.slug, cutoff=edition.cutoff,
        created=edition.created, paper_count=edition.paper_count,
        topics=tuple(TopicCount(slug=t.slug, name=t.name, count=len(t.entries)) for t in edition.topics),
    )


def feed_entries_of(edition: Edition) -> list[FeedEntry]:
    """Every (topic, paper) of the edition in rank order; the web layer keeps only a feed's newest N."""
    entries: list[FeedEntry] = []
    for topic in edition.topics:
        for position, entry in enumerate(topic.entries):
            paper = edition.papers.get(entry.paper_id)
            if paper is None:
                continue
            entries.append(FeedEntry(
                edition_id=edition.id, edition_slug=edition.slug, date=edition.date, cutoff=edition.cutoff,
                topic=topic.slug, position=position, paper_id=paper.paper_id, title=paper.title,
                abs_url=paper.abs_url, authors=short_authors(paper.authors),
                summary=shorten(collapse_whitespace(paper.ai_summary or paper.abstract), SUMMARY_CHARS),
                why="; ".join(entry.reasons),
            ))
    return entries
