"""Build an edition: the papers of its window, grouped by topic and ranked, frozen into a snapshot.

Windows (all times in the newsletter's time zone; the cut-off is the build time, or the end of the
edition's date when an edition for a past date is built):

* daily — papers first seen after the previous daily edition's cut-off, up to this cut-off. The first
  daily edition (no previous one) takes the 24 hours before its cut-off.
* weekly — papers first seen in the 7 days up to the cut-off.

A paper is in a window when ``window_start < first_seen <= cutoff``. Within a topic, papers are ranked
relevance first (``newsletter.editions.relevance``): the topic's stronger half of matches (and keyword or
category hits) before the rest, then ``trending score (at the cut-off) + match strength``, best first.
Building an edition that exists returns the stored one: an edition never changes once built.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

from newsletter.config import Settings, TopicSettings
from newsletter.editions.relevance import relevant, tiered_rank
from newsletter.editions.review import apply_review
from newsletter.errors import ConfigError
from newsletter.matching.trending import trending_score
from newsletter.records.editions import FREQUENCIES, Edition, EditionEntry, EditionPaper, EditionTopic, Frequency
from newsletter.records.papers import Paper, TopicMatch
from newsletter.storage.editions import EditionStore, edition_slug
from newsletter.storage.papers import PaperStore
from newsletter.storage.reviews import ReviewStore

FIRST_DAILY_WINDOW = timedelta(hours=24)
WEEKLY_WINDOW = timedelta(days=7)
WEEKEND_NOTE = "arXiv does not announce on Saturdays and Sundays"


def edition_window(
    frequency: Frequency, day: date, *, now: datetime, timezone: str, previous: Edition | None
) -> tuple[datetime, datetime]:
    """(window_start, cutoff) of the edition of ``frequency`` for ``day``; see the module docstring."""
    zone = zoneinfo.ZoneInfo(timezone)
    end_of_day = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    cutoff = min(now, end_of_day)
    if frequency == "weekly":
        return cutoff - WEEKLY_WINDOW, cutoff
    start = previous.cutoff if previous is not None else cutoff - FIRST_DAILY_WINDOW
    return min(start, cutoff), cutoff


def empty_reason(
    frequency: Frequency, window_start: datetime, cutoff: datetime, *, timezone: str, new_papers: int
) -> str:
    """Why an edition holds nothing, in words an operator (and the archive page) can show."""
    zone = zoneinfo.ZoneInfo(timezone)
    since = window_start.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    if new_papers:
        return f"{new_papers} new papers since {since}, none in the configured topics"
    reason = f"no new papers since {since}"
    if cutoff.astimezone(zone).weekday() >= 5:
        reason += f" ({WEEKEND_NOTE})"
    return reason


def _edition_paper(paper: Paper, *, settings: Settings, cutoff: datetime) -> EditionPaper:
    score = trending_score(paper, now=cutoff, settings=settings.trending)
    return EditionPaper(
        paper_id=paper.paper_id,
        title=paper.title,
        authors=paper.authors,
        abstract=paper.abstract,
        ai_summary=paper.ai_summary,
        primary_category=paper.primary_category,
        abs_url=paper.abs_url,
        pdf_url=paper.pdf_url,
        hf_url=paper.hf_url,
        code_url=paper.code_url,
        project_url=paper.project_url,
        thumbnail_url=paper.thumbnail_url,
        upvotes=paper.upvotes,
        github_stars=paper.github_stars,
        published=paper.published.isoformat() if paper.published else None,
        score=round(score.value, 4),
        score_explanation=score.explain(),
    )


def compose(
    papers: Sequence[Paper],
    matches: Iterable[TopicMatch],
    topics: Sequence[TopicSettings],
    *,
    settings: Settings,
    cutoff: datetime,
) -> tuple[dict[str, EditionPaper], tuple[EditionTopic, ...]]:
    """Pure: the window's papers and their matches → ranked topics (config order) and the papers they hold.

    Papers no topic claims are left out; topics with no papers are left out.
    """
    by_id = {p.paper_id: p for p in papers}
    by_topic: dict[str, list[TopicMatch]] = defaultdict(list)
    for match in matches:
        if match.paper_id in by_id:
            by_topic[match.topic].append(match)
    snapshot: dict[str, EditionPaper] = {}
    result: list[EditionTopic] = []
    for topic in topics:
        entries: list[EditionEntry] = []
        claimed = by_topic.get(topic.slug, [])
        for match, in_tier in zip(claimed, relevant(claimed), strict=True):
            if match.paper_id not in snapshot:
                snapshot[match.paper_id] = _edition_paper(by_id[match.paper_id], settings=settings, cutoff=cutoff)
            rank = tiered_rank(snapshot[match.paper_id].score, match, in_tier=in_tier)
            entries.append(EditionEntry(paper_id=match.paper_id, strength=match.strength, rank=rank,
                                        reasons=match.reasons))
        if entries:
            entries.sort(key=lambda e: (-e.rank, e.paper_id))
            result.append(EditionTopic(slug=topic.slug, name=topic.name, entries=tuple(entries)))
    ordered = {pid: snapshot[pid] for pid in sorted(snapshot)}
    return ordered, tuple(result)


def build_edition(
    settings: Settings,
    store: PaperStore,
    editions: EditionStore,
    *,
    frequency: Frequency,
    now: datetime,
    day: date | None = None,
    persist: bool = True,
) -> Edition:
    """Return the edition of ``frequency`` for ``day`` (default: today), building and storing it if needed.

    The papers' topic matches are read from the store as the matching step left them (``refresh_matches``
    brings them up to date first where a caller may write). ``persist=False`` (preview, dry run, test
    copies) computes the edition as it would be now without storing it, so looking at an edition never
    freezes it before the real send: papers fetched after a preview still go into that day's edition. Its
    id is 0.
    """
    if frequency not in FREQUENCIES:
        raise ConfigError(f"unknown frequency {frequency!r}; expected one of: {', '.join(FREQUENCIES)}")
    timezone = settings.newsletter.timezone
    day = day or now.astimezone(zoneinfo.ZoneInfo(timezone)).date()
    existing = editions.get(frequency, day)
    if existing is not None:  # as the editor shaped it, if they did (`newsletter edition pin|drop|note`)
        return apply_review(existing, ReviewStore(store.engine).get(existing.id))
    if datetime.combine(day, time(0), tzinfo=zoneinfo.ZoneInfo(timezone)) > now:
        raise ConfigError(f"cannot build the {frequency} edition of {day.isoformat()}: that date is in the future")
    previous = editions.previous(frequency, day) if frequency == "daily" else None
    window_start, cutoff = edition_window(frequency, day, now=now, timezone=timezone, previous=previous)
    candidates = store.papers(since=window_start)
    papers = [p for p in candidates if p.first_seen is not None and window_start < p.first_seen <= cutoff]
    matches = store.matches(paper_ids=[p.paper_id for p in papers]) if papers else []
    snapshot, topics = compose(papers, matches, settings.topics, settings=settings, cutoff=cutoff)
    reason = None
    if not snapshot:
        reason = empty_reason(frequency, window_start, cutoff, timezone=timezone, new_papers=len(papers))
    if not persist:
        return Edition(id=0, frequency=frequency, date=day, slug=edition_slug(frequency, day),
                       window_start=window_start, cutoff=cutoff, created=now, papers=snapshot, topics=topics,
                       empty_reason=reason)
    return editions.insert(
        frequency=frequency,
        day=day,
        window_start=window_start,
        cutoff=cutoff,
        created=now,
        papers=snapshot,
        topics=topics,
        empty_reason=reason,
        publish=False,  # public once it is sent: `prepare` publishes it when its ledger is filled
    )


def stored_edition(settings: Settings, editions: EditionStore, *, frequency: Frequency, now: datetime,
                   day: date | None = None) -> Edition | None:
    """The edition of ``frequency`` for ``day`` (default: today) when it was built already, else None."""
    timezone = settings.newsletter.timezone
    return editions.get(frequency, day or now.astimezone(zoneinfo.ZoneInfo(timezone)).date())

